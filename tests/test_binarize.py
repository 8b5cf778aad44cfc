"""binarize(): which layers it replaces, its errors, save/load, and that every method trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from binsr.binary import METHODS, BinaryConv2d, BinaryLinear, ThreeBranch, binarize, timestep_groups
from binsr.errors import BinsrError


class Attention(nn.Module):
    """Self-attention with 1x1-conv projections (as diffusion UNets have) plus nn.MultiheadAttention."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.mha = nn.MultiheadAttention(channels, 2, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).flatten(2).chunk(3, dim=1)
        a = torch.softmax(q.transpose(1, 2) @ k / c**0.5, dim=-1) @ v.transpose(1, 2)
        a, _ = self.mha(a, a, a)
        return x + self.proj(a.transpose(1, 2).reshape(b, c, h, w))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, 16, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
        self.down = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.attn = Attention(16)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.norm = nn.GroupNorm(4, 16)
        self.temporal = nn.Conv1d(16, 16, 3, padding=1)  # not a target: only Conv2d and Linear are
        self.conv_last = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x):
        h = self.down(self.body(self.conv_first(x)))
        h = self.norm(self.attn(h))
        b, c, hh, ww = h.shape
        t = self.mlp(h.flatten(2).transpose(1, 2))
        t = self.temporal(t.transpose(1, 2))
        return self.conv_last(F.interpolate(t.reshape(b, c, hh, ww), scale_factor=2.0))


BINARIZED = ["body.0", "body.2", "down", "attn.qkv", "attn.proj", "mlp.0", "mlp.2"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_replaces_exactly_the_right_layers(method):
    torch.manual_seed(0)
    model = Net()
    binary, report = binarize(model, method, keep_fp=["conv_*"])
    assert [c.name for c in report.replaced] == BINARIZED
    assert report.kept_fp == ["conv_first", "conv_last"]
    assert report.skipped == [("attn.mha.out_proj", "inside nn.MultiheadAttention, which uses its weights directly")]
    expected_type = ThreeBranch if method == "bimacosr" else (BinaryConv2d, BinaryLinear)
    for name in BINARIZED:
        assert isinstance(binary.get_submodule(name), expected_type)
    for name in ["conv_first", "conv_last", "temporal", "attn.mha.out_proj"]:
        assert type(binary.get_submodule(name)) is type(model.get_submodule(name))
    assert type(model.get_submodule("body.0")) is nn.Conv2d  # the original is untouched
    assert binary(torch.randn(2, 3, 8, 8)).shape == (2, 3, 8, 8)  # a plain model(x) runs


def test_inplace_and_latent_weights():
    model = Net()
    original = model.body[0].weight.detach().clone()
    same, _ = binarize(model, "xnor", keep_fp=["conv_*"], inplace=True)
    assert same is model and isinstance(model.body[0], BinaryConv2d)
    assert torch.equal(model.body[0].weight, original)  # FP weights become the latent weights


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m: binarize(m, "xnorr"), "unknown binarization method 'xnorr' (available: bbcu, bidiffsr, bidm,"),
        (lambda m: binarize(m, "xnor", rank=4), "method 'xnor' has no option 'rank' (options: none)"),
        (lambda m: binarize(m, "bimacosr", foo=1), "method 'bimacosr' has no option 'foo'"),
        (lambda m: binarize(m, "bnn", keep_fp=["conv_frist"]), "keep_fp pattern 'conv_frist' matches no conv/linear layer"),
        (lambda m: binarize(m, "bimacosr", keep_fp=["conv_*"], rank=20),
         "rank 20 is larger than min(C_in, C_out) = 16 of layer 'body.0'"),
        (lambda m: binarize(m, "bimacosr", keep_fp=["conv_*"], k=300), "k = 300 is larger than the 16x16 weight of layer 'body.0'"),
        (lambda m: binarize(m, "bimacosr", rank="lots"), "method 'bimacosr' option 'rank' must be int or 'auto', got 'lots'"),
    ],
)
def test_bad_requests_are_one_clear_error(call, message):
    with pytest.raises(BinsrError) as info:
        call(Net())
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_incompatible_layers_name_the_layer_and_the_way_out():
    grouped = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=4))
    with pytest.raises(BinsrError, match=r"layer '0' \(Conv2d\(8->8, 3x3, s1\)\) cannot be binarized with bimacosr: "
                                         r"grouped convolution .* keep_fp=\['0'\]"):
        binarize(grouped, "bimacosr")
    dilated = nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2))
    for method in ("xnor", "bidm"):
        with pytest.raises(BinsrError, match="dilation"):
            binarize(dilated, method)
    assert isinstance(binarize(grouped, "xnor")[0][0], BinaryConv2d)  # grouped binary convs are fine elsewhere
    assert isinstance(binarize(dilated, "bimacosr")[0][0], ThreeBranch)  # dilated but centred: fine


@pytest.mark.parametrize("method,options", [("bidiffsr", {}), ("bimacosr", {"rank": "auto", "k": "auto"}), ("irnet", {})])
def test_state_dict_round_trip_through_safetensors(method, options, tmp_path):
    torch.manual_seed(0)
    binary, report = binarize(Net(), method, keep_fp=["conv_*"], **options)
    with torch.no_grad():  # move every parameter away from its initial value
        for p in binary.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "model.safetensors"
    save_model(binary, str(path))
    torch.manual_seed(1)  # a different FP model: same structure only through report.layer_options()
    fresh, _ = binarize(Net(), method, keep_fp=["conv_*"], layer_options=report.layer_options(), **options)
    load_model(fresh, str(path))
    x = torch.randn(2, 3, 8, 8)
    with timestep_groups(torch.tensor([100, 1900]), 2000):
        assert torch.equal(binary.eval()(x), fresh.eval()(x))


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.Conv2d(16, 16, 3, padding=1)
        self.b2 = nn.Conv2d(16, 16, 3, padding=1)
        self.tail = nn.Conv2d(16, 3, 3, padding=1)

    def forward(self, x):
        h = self.head(x)
        return self.tail(h + self.b2(torch.relu(self.b1(h))))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_binarized_cnn_trains_on_a_toy_regression(method):
    torch.manual_seed(0)
    teacher = Tiny()
    x = torch.randn(16, 3, 12, 12)
    with torch.no_grad():
        target = teacher(x)
    student, _ = binarize(Tiny(), method, keep_fp=["head", "tail"])
    latent = student.b1.bmb.weight if method == "bimacosr" else student.b1.weight
    before = latent.detach().clone()
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(student(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, f"{method}: {losses[0]:.4f} -> {losses[-1]:.4f}"
    assert (latent.detach() - before).abs().max() > 1e-3  # the binary layer's latent weights learned too


@pytest.mark.parametrize("tar,taa", [(True, True), (True, False), (False, True), (False, False)])
def test_bidiffsr_tar_and_taa_switch_to_one_group_each(tar, taa):
    """BI-DiffSR's TaR/TaA ablation: an ablated part keeps one group, the other K; both on is the default."""
    layer = binarize(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1)), "bidiffsr", timestep_groups=5, tar=tar,
                     taa=taa)[0][0]
    assert layer.pre_bias.bias.shape[0] == (5 if tar else 1)
    assert all(p.shape[0] == (5 if taa else 1) for p in layer.activation.parameters())


def test_a_file_written_before_an_option_existed_means_its_default():
    from binsr.config import ConfigError
    from binsr.models.description import BinarizationSpec

    old = {"method": "bidiffsr", "options": {"timestep_groups": 5, "residual": True}, "keep_fp": [], "layer_options": {}}
    assert BinarizationSpec.parse(old).options == {"timestep_groups": 5, "residual": True, "tar": True, "taa": True}
    with pytest.raises(ConfigError, match="residual"):  # an option that files always stated is still required
        BinarizationSpec.parse({**old, "options": {"timestep_groups": 5}})


@pytest.mark.parametrize("k,multiple", [("max", 1), ("2max", 2), ("4max", 4)])
def test_bimacosr_sparse_count_as_a_multiple_of_the_widest_side(k, multiple):
    """k = multiple × max(C_in, C_out) sparse entries per layer, capped at the matrix size (here 16x32 = 512)."""
    net = binarize(nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.Linear(32, 8)), "bimacosr", rank=4, k=k)[0]
    assert [layer.smb.index.numel() for layer in net] == [min(multiple * 32, 512), min(multiple * 32, 256)]
