"""The one description of a model file (and of a model card's architecture), and loading a file by it.

Format 2 header (every key present; format-1 files are upgraded on reading)::

    {"format": 2, "kind": str, "scale": 4,                   # a registered pipeline type (binsr.pipelines.registry)
     "network": {"type", "config", "binarize"},            # binsr.models.description.NetworkSpec
     "process": {"type", "config"},                          # binsr.diffusion.ProcessSpec (the pipeline's type)
     "autoencoder": {"type", "config"} | null,               # binsr.models.description.AutoencoderSpec
     "packed": {"format": 1, "floats": "float16" | "float32", "bits": "..."} | null,
     "sampling_steps": int | null,                           # pipelines that take steps: the file's default
     "name": str | null, "trained_steps": int | null, "recipe": {...} | null, "teacher": str | null}

Parsing validates every value (registered names, bounded configs) and :func:`load_model` compares the
file's tensors with the structure the description implies (built on the meta device) before any memory
is allocated. Nothing named in a file is imported or called.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import nn

from binsr.config import ConfigError, exact_keys
from binsr.deploy.files import FLOAT_TYPES, PACKED_FORMAT, load_packed_network
from binsr.diffusion.processes import ProcessSpec
from binsr.errors import BinsrError
from binsr.models.denoiser import bind_timesteps
from binsr.models.description import AutoencoderSpec, NetworkSpec
from binsr.models.files import FORMAT_VERSION, METADATA_KEY, load_into_skeleton, read_header
from binsr.pipelines.registry import PIPELINES
from binsr.utils.fs import atomic_write

KEYS = ("format", "kind", "scale", "network", "process", "autoencoder", "packed", "sampling_steps", "name",
        "trained_steps", "recipe", "teacher")
MAX_SCALE = 16


def _optional(value: Any, kind: type, where: str, low: int | None = None, high: int | None = None) -> Any:
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) or (
            low is not None and not low <= value <= (high if high is not None else value)):
        bounds = f" from {low} to {high}" if low is not None else ""
        raise ConfigError(f"'{where}' must be {kind.__name__}{bounds} or null, got {value!r}")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """Everything a model file says about its model (see the module doc)."""

    kind: str
    scale: int
    network: NetworkSpec
    process: ProcessSpec
    autoencoder: AutoencoderSpec | None = None
    packed: dict[str, Any] | None = None
    sampling_steps: int | None = None
    name: str | None = None
    trained_steps: int | None = None
    recipe: dict[str, Any] | None = field(default=None, compare=False)
    teacher: str | None = None

    @classmethod
    def parse(cls, header: dict[str, Any]) -> ModelSpec:
        """A format-2 header dict → a validated spec (one ConfigError for the first problem)."""
        data = exact_keys(header, "header", KEYS)
        if data["format"] != FORMAT_VERSION:
            raise ConfigError(f"header format must be {FORMAT_VERSION}, got {data['format']!r}")
        kind = data["kind"]
        if kind not in PIPELINES:
            raise ConfigError(f"unknown model kind {kind!r} (known: {', '.join(PIPELINES.names())})")
        pipeline = PIPELINES.get(kind)
        scale = data["scale"]
        if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
            raise ConfigError(f"'scale' must be an integer from 1 to {MAX_SCALE}, got {scale!r}")
        process = ProcessSpec.parse(data["process"])
        if process.type != pipeline.process_type:
            raise ConfigError(f"a {kind} model needs process {pipeline.process_type!r}, not {process.type!r}")
        packed = data["packed"]
        if packed is not None:
            packed = exact_keys(packed, "packed", ("format", "floats", "bits"))
            if packed["format"] != PACKED_FORMAT or packed["floats"] not in FLOAT_TYPES:
                raise ConfigError(f"'packed' must be format {PACKED_FORMAT} with floats {' or '.join(FLOAT_TYPES)}")
        recipe = data["recipe"]
        if recipe is not None and not isinstance(recipe, dict):
            raise ConfigError("'recipe' must be a mapping or null")
        return cls(
            kind=kind, scale=scale, network=NetworkSpec.parse(data["network"]), process=process,
            autoencoder=None if data["autoencoder"] is None else AutoencoderSpec.parse(data["autoencoder"]),
            packed=packed, sampling_steps=_optional(data["sampling_steps"], int, "sampling_steps", 1, 100_000),
            name=_optional(data["name"], str, "name"),
            trained_steps=_optional(data["trained_steps"], int, "trained_steps", 0, 1 << 40),
            recipe=recipe, teacher=_optional(data["teacher"], str, "teacher"))

    def to_dict(self) -> dict[str, Any]:
        """The format-2 header of this spec."""
        return {"format": FORMAT_VERSION, "kind": self.kind, "scale": self.scale, "network": self.network.to_dict(),
                "process": self.process.to_dict(),
                "autoencoder": None if self.autoencoder is None else self.autoencoder.to_dict(),
                "packed": self.packed, "sampling_steps": self.sampling_steps, "name": self.name,
                "trained_steps": self.trained_steps, "recipe": self.recipe, "teacher": self.teacher}

    @property
    def method(self) -> str | None:
        """The binarization method, or None for a full-precision model."""
        return self.network.binarize.method if self.network.binarize is not None else None

    @property
    def latent_factor(self) -> int:
        """How many times smaller than the image the network works (1: pixel space)."""
        return int(self.autoencoder.config.factor) if self.autoencoder is not None else 1


def read_model_spec(path: str | os.PathLike[str]) -> ModelSpec:
    """The validated description of model file ``path`` (one line naming the file on any problem)."""
    header = read_header(path)
    try:
        return ModelSpec.parse(header)
    except BinsrError as err:
        raise BinsrError(f"{path}: {err}") from None


@dataclass
class LoadedModel:
    """A model file's parts: its spec, network (bound to the process's T), process and autoencoder."""

    spec: ModelSpec
    network: nn.Module
    process: Any
    autoencoder: nn.Module | None


def load_network(path: str | os.PathLike[str], spec: ModelSpec | None = None,
                 device: str | torch.device = "cpu") -> nn.Module:
    """The network of model file ``path``: the training network with its weights, or — for a file
    made by ``binsr export`` — the inference-only bit-packed network. Built from the description on
    the meta device, checked against the file's tensors, then allocated and filled once."""
    spec = spec or read_model_spec(path)
    try:
        if spec.packed:
            network = load_packed_network(path, spec.network, device)
        else:
            network = load_into_skeleton(spec.network.build("meta"), path, device)
    except BinsrError as err:
        message = str(err)
        raise BinsrError(message if str(path) in message else f"{path}: {message}") from None
    return bind_timesteps(network, spec.process.num_timesteps)


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu",
               spec: ModelSpec | None = None) -> LoadedModel:
    """Every part of model file ``path`` (whose spec, when already read, is ``spec``), validated before
    anything is allocated."""
    spec = spec or read_model_spec(path)
    network = load_network(path, spec, device)
    autoencoder = spec.autoencoder.build().to(device) if spec.autoencoder is not None else None
    return LoadedModel(spec, network, spec.process.build(), autoencoder)


def upgrade_model_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> ModelSpec:
    """Rewrite a format-1 model file in format 2: the same tensors, byte for byte, under the new header.
    The file is loaded first, so only a file that loads is rewritten (atomically)."""
    spec = read_model_spec(source)
    load_network(source, spec)
    with safe_open(str(source), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    with atomic_write(target, "wb") as out:
        out.write(save(tensors, metadata={METADATA_KEY: json.dumps(spec.to_dict())}))
    return spec
