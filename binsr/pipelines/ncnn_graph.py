"""An ncnn network (.param text + .bin weights) run by PyTorch, on any device PyTorch has.

Written here because no maintained library reads ncnn models into PyTorch (ncnn's own ``pnnx`` converts
the other way). Only the layers the peers' Real-ESRGAN nets use are supported — Input, Split, Concat,
Convolution (with its fused activation), Eltwise, BinaryOp, Interp (nearest, bilinear, bicubic), PixelShuffle,
PReLU — and any other layer, or option of these, is one error naming it: a graph is run exactly or not
at all. Blobs are (B, C, H, W) tensors; ncnn's axis 0 (channels) is dimension 1 here.

The .bin layout follows ncnn's ``ModelBinFromDataReader``: each Convolution's weights are one *flagged*
array (a 4-byte tag: ``0x01306B47`` fp16 padded to 4 bytes, 0 raw fp32, other nonzero flags a 256-entry
fp32 table followed by uint8 indices padded to 4 bytes; int8 is refused), then its bias as raw fp32;
PReLU slopes are raw fp32. Every size is checked against the file before anything is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from binsr.errors import BinsrError

MAGIC = "7767517"
FP16_TAG, INT8_TAG = 0x01306B47, 0x000D4B38
ARRAY_KEY = -23300  # a key k <= -23300 holds the array of parameter -k - 23300: "n,v1,...,vn"


@dataclass
class Layer:
    """One line of a .param file: ``kind``, ``name``, input and output blob names, and its parameters
    (int or float, or a list of them for array parameters)."""

    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list[int | float]] = field(default_factory=dict)

    def get(self, key: int, default: int | float) -> int | float:
        value = self.params.get(key, default)
        if isinstance(value, list):
            raise BinsrError(f"ncnn layer {self.name}: parameter {key} is an array, a number was expected")
        return value


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(text: str, source: str) -> list[Layer]:
    """The layers of a .param file's ``text`` (``source`` names it in errors)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [MAGIC] or len(lines) < 2 or len(lines[1]) != 2:
        raise BinsrError(f"{source}: not an ncnn .param file (magic {MAGIC} and a layer/blob count line)")
    count = int(lines[1][0])
    if count != len(lines) - 2:
        raise BinsrError(f"{source}: says {count} layers but has {len(lines) - 2}")
    layers = []
    for number, words in enumerate(lines[2:], start=3):
        try:
            kind, name, n_in, n_out = words[0], words[1], int(words[2]), int(words[3])
            blobs, rest = words[4:4 + n_in + n_out], words[4 + n_in + n_out:]
            params: dict[int, int | float | list[int | float]] = {}
            for item in rest:
                key_text, value = item.split("=", 1)
                key = int(key_text)
                if key <= ARRAY_KEY:
                    values = [_number(v) for v in value.split(",")]
                    params[-key + ARRAY_KEY] = values[1:1 + int(values[0])]
                else:
                    params[key] = _number(value)
        except (IndexError, ValueError) as err:
            raise BinsrError(f"{source}: line {number} is not an ncnn layer ({err})") from None
        if len(blobs) != n_in + n_out:
            raise BinsrError(f"{source}: line {number} names fewer blobs than it counts")
        layers.append(Layer(kind, name, blobs[:n_in], blobs[n_in:], params))
    return layers


class _Weights:
    """Reads a .bin file's arrays in order, each checked against the bytes left."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.source, self.offset = data, source, 0

    def _take(self, size: int, what: str) -> bytes:
        if size < 0 or self.offset + size > len(self.data):
            raise BinsrError(f"{self.source}: ends inside {what} (needs {size} bytes at offset {self.offset})")
        chunk = self.data[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def raw(self, count: int, what: str) -> torch.Tensor:
        """``count`` raw fp32 values."""
        return torch.from_numpy(np.frombuffer(self._take(4 * count, what), dtype="<f4").copy())

    def flagged(self, count: int, what: str) -> torch.Tensor:
        """``count`` values stored after a 4-byte type flag (fp16, fp32 or a 256-entry table)."""
        flag = self._take(4, what)
        tag = int.from_bytes(flag, "little")
        if tag == FP16_TAG:
            values = np.frombuffer(self._take((2 * count + 3) // 4 * 4, what), dtype="<f2")[:count]
            return torch.from_numpy(values.astype(np.float32))
        if tag == INT8_TAG:
            raise BinsrError(f"{self.source}: {what} is int8-quantized, which binsr's reader does not run")
        if sum(flag) == 0:
            return self.raw(count, what)
        table = np.frombuffer(self._take(4 * 256, what), dtype="<f4")
        indices = np.frombuffer(self._take((count + 3) // 4 * 4, what), dtype=np.uint8)[:count]
        return torch.from_numpy(table[indices].astype(np.float32))


def _activation(layer: Layer, x: torch.Tensor) -> torch.Tensor:
    kind = layer.get(9, 0)
    values = layer.params.get(10, [])
    values = values if isinstance(values, list) else [values]
    if kind == 0:
        return x
    if kind == 1:
        return F.relu(x) if not values or values[0] == 0 else F.leaky_relu(x, float(values[0]))
    if kind == 2:
        return F.leaky_relu(x, float(values[0]) if values else 0.0)
    if kind == 3 and len(values) == 2:
        return x.clamp(float(values[0]), float(values[1]))
    if kind == 4:
        return torch.sigmoid(x)
    raise BinsrError(f"ncnn layer {layer.name}: activation type {kind} is not supported")


_BINARY = {0: torch.add, 1: torch.sub, 2: torch.mul, 3: torch.div, 4: torch.maximum, 5: torch.minimum,
           7: lambda a, b: b - a, 8: lambda a, b: b / a}


class NcnnGraph(nn.Module):
    """``forward(x)`` runs the graph on ``x`` (B, C, H, W), fed to the Input layer's blob, and returns the
    blob ``output`` (or the graph's last blob). Weights are buffers, so ``.to(device)`` moves them."""

    SUPPORTED = ("Input", "Split", "Concat", "Convolution", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "PReLU")

    def __init__(self, layers: list[Layer], weights: bytes, source: str, output: str = "output") -> None:
        super().__init__()
        self.layers, self.output = layers, output
        reader = _Weights(weights, source)
        for index, layer in enumerate(layers):
            if layer.kind not in self.SUPPORTED:
                raise BinsrError(f"{source}: layer {layer.name} is a {layer.kind}, which binsr's reader does not run")
            if layer.kind == "Convolution":
                self._convolution_weights(index, layer, reader)
            elif layer.kind == "PReLU":
                self.register_buffer(f"slope{index}", reader.raw(int(layer.get(0, 1)), f"{layer.name}'s slopes"))
        if reader.offset != len(weights):
            raise BinsrError(f"{source}: {len(weights) - reader.offset} bytes are left after the last layer's "
                             f"weights (a .bin of another .param?)")
        produced = [blob for layer in layers for blob in layer.outputs]
        if output not in produced:
            self.output = produced[-1]
        self._last_use = {blob: i for i, layer in enumerate(layers) for blob in layer.inputs}

    def _convolution_weights(self, index: int, layer: Layer, reader: _Weights) -> None:
        if layer.get(8, 0):
            raise BinsrError(f"ncnn layer {layer.name}: int8 convolutions are not supported")
        if any(layer.get(key, 0) < 0 for key in (4, 14, 15, 16)):
            raise BinsrError(f"ncnn layer {layer.name}: automatic ('same') padding is not supported")
        out, kw = int(layer.get(0, 0)), int(layer.get(1, 0))
        kh, size = int(layer.get(11, kw)), int(layer.get(6, 0))
        if out <= 0 or kw <= 0 or kh <= 0 or size <= 0 or size % (out * kh * kw):
            raise BinsrError(f"ncnn layer {layer.name}: weight size {size} does not fit {out} outputs of {kh}x{kw}")
        weight = reader.flagged(size, f"{layer.name}'s weights").reshape(out, size // (out * kh * kw), kh, kw)
        self.register_buffer(f"weight{index}", weight)
        if layer.get(5, 0):
            self.register_buffer(f"bias{index}", reader.raw(out, f"{layer.name}'s bias"))

    @classmethod
    def load(cls, param: str | Path, weights: str | Path) -> NcnnGraph:
        """The graph of files ``param`` (.param text) and ``weights`` (.bin)."""
        try:
            text, data = Path(param).read_text(encoding="ascii"), Path(weights).read_bytes()
        except (OSError, UnicodeDecodeError) as err:
            raise BinsrError(f"{param}: cannot read this ncnn model ({err})") from None
        return cls(parse_param(text, str(param)), data, str(weights))

    def _run(self, index: int, layer: Layer, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        kind = layer.kind
        if kind == "Split":
            return [xs[0]] * len(layer.outputs)
        if kind == "Concat":
            return [torch.cat(xs, dim=int(layer.get(0, 0)) + 1)]
        if kind == "Convolution":
            pads = [int(layer.get(4, 0))]
            pads += [int(layer.get(15, pads[0]))]
            pads += [int(layer.get(14, pads[0]))]
            pads += [int(layer.get(16, pads[2]))]
            x = xs[0]
            if any(pads):
                x = F.pad(x, pads, value=float(layer.get(18, 0.0)))
            dilation = (int(layer.get(12, layer.get(2, 1))), int(layer.get(2, 1)))
            stride = (int(layer.get(13, layer.get(3, 1))), int(layer.get(3, 1)))
            bias = getattr(self, f"bias{index}", None)
            return [_activation(layer, F.conv2d(x, getattr(self, f"weight{index}"), bias, stride, 0, dilation))]
        if kind == "Eltwise":
            op, coeffs = layer.get(0, 1), layer.params.get(1, [])
            if op == 1:
                coeffs = coeffs if isinstance(coeffs, list) and coeffs else [1.0] * len(xs)
                return [sum(float(c) * x for c, x in zip(coeffs, xs, strict=True))]
            if op == 0 or op == 2:
                result = xs[0]
                for x in xs[1:]:
                    result = result * x if op == 0 else torch.maximum(result, x)
                return [result]
        if kind == "BinaryOp":
            op = _BINARY.get(int(layer.get(0, 0)))
            if op is not None and layer.get(1, 0):
                return [op(xs[0], torch.tensor(float(layer.get(2, 0.0)), dtype=xs[0].dtype, device=xs[0].device))]
            if op is not None and len(xs) == 2 and xs[0].shape == xs[1].shape:
                return [op(xs[0], xs[1])]
        if kind == "Interp":
            mode = {1: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(layer.get(0, 0)))
            if mode is not None and not layer.get(6, 0) and not layer.get(3, 0) and not layer.get(4, 0):
                factor = (float(layer.get(1, 1.0)), float(layer.get(2, 1.0)))
                extra = {} if mode == "nearest" else {"align_corners": False}
                return [F.interpolate(xs[0], scale_factor=factor, mode=mode, **extra)]
        if kind == "PixelShuffle" and not layer.get(1, 0):
            return [F.pixel_shuffle(xs[0], int(layer.get(0, 1)))]
        if kind == "PReLU":
            slope = getattr(self, f"slope{index}")
            return [torch.where(xs[0] >= 0, xs[0], xs[0] * slope.view(1, -1, 1, 1))]
        raise BinsrError(f"ncnn layer {layer.name} ({kind}): these options are not supported: {layer.params}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blobs: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.layers):
            if layer.kind == "Input":
                blobs[layer.outputs[0]] = x
                continue
            inputs = [blobs[name] for name in layer.inputs]
            for name in layer.inputs:  # free each blob after its last reader: a tile's working set, not the graph's
                if self._last_use[name] == index and name != self.output:
                    del blobs[name]
            blobs.update(zip(layer.outputs, self._run(index, layer, inputs), strict=True))
        return blobs[self.output]
