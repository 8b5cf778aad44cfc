"""Format-1 model files (binsr 0.1 before one description): read into today's description, never run.

Format 1 described SR3 networks as ``unet`` (binarized through ``binary`` / ``binary_options``, the
training T inside), ResShift ones as ``network``, the process as ``diffusion``, method options without
their defaults, and the autoencoder as an import path. The one import path binsr itself wrote maps to
its registered autoencoder; any other is refused (it is never imported).
"""

from __future__ import annotations

from typing import Any

import torch

from binsr.binary import METHODS
from binsr.config import ConfigError, from_dict
from binsr.models.unet import SRUNet, UNetConfig

KNOWN_AUTOENCODER_PATHS = {
    "binsr.models.autoencoder:SpaceToDepth": {"type": "space_to_depth", "config": {"factor": 4}},
}
_V1_UNET_ONLY = ("binary", "binary_options", "num_timesteps")


def _options(method: Any, given: Any) -> dict[str, Any]:
    """A format-1 method's options with the defaults of that format filled in."""
    if not isinstance(given, dict):
        raise ConfigError("binarize options must be a mapping")
    return {**METHODS.get(method).options, **given}


def upgrade_v1(header: dict[str, Any]) -> dict[str, Any]:
    """The format-2 header of format-1 ``header`` (a dict as read from the file)."""
    kind = header.get("kind")
    if kind == "sr3":
        unet = header.get("unet")
        if not isinstance(unet, dict):
            raise ConfigError("a format-1 sr3 file misses its 'unet' description")
        config = {k: v for k, v in unet.items() if k not in _V1_UNET_ONLY}
        method = unet.get("binary", "bidiffsr")
        binarize = None
        if method:
            with torch.device("meta"):  # its FP layers follow from the architecture (nothing allocated)
                keep_fp = SRUNet(from_dict(UNetConfig, config, "unet.")).full_precision_patterns()
            binarize = {"method": method, "options": _options(method, unet.get("binary_options", {"timestep_groups": 5})),
                        "keep_fp": keep_fp, "layer_options": {}}
        network = {"type": "sr_unet", "config": config, "binarize": binarize}
        process = "sr3"
    elif kind in ("resshift", "onestep"):
        network = header.get("network")
        if not isinstance(network, dict):
            raise ConfigError(f"a format-1 {kind} file misses its 'network' description")
        network = dict(network)
        binarize = network.get("binarize")
        if isinstance(binarize, dict):
            network["binarize"] = {**binarize, "options": _options(binarize.get("method"), binarize.get("options") or {}),
                                   "layer_options": binarize.get("layer_options") or {}}
        process = "resshift"
    else:
        raise ConfigError(f"unknown model kind {kind!r} (known: sr3, resshift, onestep)")
    autoencoder = header.get("autoencoder")
    if autoencoder is not None:
        if autoencoder not in KNOWN_AUTOENCODER_PATHS:
            raise ConfigError(f"autoencoder {autoencoder!r} is an import path, which binsr never imports from a file "
                              f"(registered autoencoders are named by type)")
        autoencoder = KNOWN_AUTOENCODER_PATHS[autoencoder]
    return {"format": 2, "kind": kind, "scale": header.get("scale"), "network": network,
            "process": {"type": process, "config": header.get("diffusion")}, "autoencoder": autoencoder,
            "packed": header.get("packed"), "sampling_steps": header.get("sampling_steps"),
            "name": header.get("name"), "trained_steps": header.get("trained_steps"),
            "recipe": header.get("recipe"), "teacher": header.get("teacher")}
