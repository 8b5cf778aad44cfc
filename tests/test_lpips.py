"""LPIPS plumbing: clear unavailability, metric properties, and equality with the lpips package's forward."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch

from binsr.errors import MetricUnavailable
from binsr.metrics.lpips import LPIPS, alexnet_features, find_lin_weights, load_lpips, lpips_distance


@pytest.fixture
def no_default_weights(tmp_path, monkeypatch):
    """No AlexNet weights anywhere binsr looks by default."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("BINSR_LPIPS_ALEXNET", raising=False)


@pytest.fixture
def random_alexnet(tmp_path):
    """A torchvision-style AlexNet checkpoint (features.* and classifier.* keys) with random weights."""
    torch.manual_seed(0)
    features = alexnet_features()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 9216)  # ignored, as in the real file
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    return path, features


@pytest.fixture
def lin_weights(tmp_path):
    """lpips' own v0.1 AlexNet linear weights when the package is installed, else random ones."""
    try:
        return find_lin_weights()
    except MetricUnavailable:
        torch.manual_seed(1)
        path = tmp_path / "alex_lin.pth"
        torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}, path)
        return path


def test_missing_alexnet_weights_is_one_clear_line(no_default_weights):
    with pytest.raises(MetricUnavailable) as info:
        load_lpips()
    message = str(info.value)
    assert message.startswith("LPIPS unavailable: AlexNet weights not found") and "\n" not in message
    with pytest.raises(MetricUnavailable, match="is not a file"):
        load_lpips(alexnet_path="/nonexistent/alexnet.pth")


def test_weights_found_through_env_and_hub_cache(no_default_weights, random_alexnet, lin_weights, monkeypatch, tmp_path):
    path, _ = random_alexnet
    monkeypatch.setenv("BINSR_LPIPS_ALEXNET", str(path))
    assert isinstance(load_lpips(lin_path=lin_weights), LPIPS)
    monkeypatch.delenv("BINSR_LPIPS_ALEXNET")
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / path.name).write_bytes(path.read_bytes())
    assert isinstance(load_lpips(lin_path=lin_weights), LPIPS)


def test_wrong_weight_files_are_rejected(tmp_path, random_alexnet, lin_weights):
    path, _ = random_alexnet
    torch.save({"features.0.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(MetricUnavailable, match="do not fit"):
        load_lpips(tmp_path / "bad.pth", lin_weights)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MetricUnavailable, match="cannot read weights"):
        load_lpips(path, tmp_path / "garbage.pth")


def test_metric_properties(random_alexnet, lin_weights):
    model = load_lpips(random_alexnet[0], lin_weights)
    torch.manual_seed(2)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-7)  # LPIPS(x, x) = 0
    assert torch.allclose(model(x, y), model(y, x), atol=1e-6)  # symmetric
    assert (model(x, y) > 0).all()
    close = (x + 0.02 * torch.randn_like(x)).clamp(0, 1)
    assert (model(x, close) < model(x, y)).all()  # a small perturbation is nearer than another image
    single = lpips_distance(model, x[0], y[0])
    assert single.dtype == torch.float64 and single.item() == pytest.approx(model(x, y)[0].item(), rel=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("lpips") is None, reason="lpips package not installed")
def test_equals_the_lpips_package_forward(random_alexnet, lin_weights, monkeypatch):
    """Run lpips.LPIPS itself — its scaling, normalisation, lin layers, averaging — with the same trunk.

    The lpips package imports torchvision only to build AlexNet; a stand-in module hands it our trunk.
    """
    _, features = random_alexnet
    tv_models = types.SimpleNamespace(alexnet=lambda **kwargs: types.SimpleNamespace(features=features))
    stub = types.ModuleType("torchvision")
    stub.models = tv_models
    monkeypatch.setitem(sys.modules, "torchvision", stub)
    for name in [m for m in sys.modules if m == "lpips" or m.startswith("lpips.")]:
        monkeypatch.delitem(sys.modules, name)
    import lpips

    reference = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    ours = load_lpips(random_alexnet[0], lin_weights)
    torch.manual_seed(3)
    x, y = torch.rand(3, 3, 48, 56), torch.rand(3, 3, 48, 56)
    expected = reference(x, y, normalize=True).flatten()
    assert torch.allclose(ours(x, y), expected, rtol=1e-5, atol=1e-7)
