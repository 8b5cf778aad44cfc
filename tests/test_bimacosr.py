"""ResShift teacher → SinSR one-step student → BiMaCoSR 1-bit student, end to end on tiny sizes."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import torch

from binsr import pipelines
from binsr.binary import METHODS, ThreeBranch
from binsr.cli import main
from binsr.config import ConfigError
from binsr.diffusion import DistillConfig, ResShift, SinSRDistillation, to_model_range
from binsr.errors import BinsrError
from binsr.models import ResShiftUNet, ResShiftUNetConfig, build
from binsr.pipelines import read_model_spec
from binsr.training import Trainer
from binsr.training.config import load_train_config

TINY = ["model.model_channels=16", "model.channel_mult=[1,2]", "model.num_res_blocks=1", "model.norm_groups=8",
        "model.image_size=32", "model.attn_res=[16]", "model.swin_embed_dim=32", "model.head_channels=16",
        "model.window_size=4"]


def tiny_network() -> ResShiftUNet:
    torch.manual_seed(0)
    return ResShiftUNet(ResShiftUNetConfig(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, norm_groups=8,
                                           image_size=32, attn_res=(16,), swin_embed_dim=32, head_channels=16,
                                           window_size=4))


def common(name: str, out_dir: Path, train_folder: Path) -> list[str]:
    return [f"name={name}", f"out_dir={out_dir}", f"data.train={train_folder}", "data.val=null",
            "data.patch_size=32", "data.batch_size=2", "ckpt_every=0", "log_every=1", "optim.warmup_steps=0"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory, train_folder: Path) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bimacosr")
    teacher = Trainer(load_train_config("resshift-small-x4", common("teacher", out, train_folder) + TINY + ["steps=3"]),
                      progress=False).train().model_file
    student = Trainer(load_train_config("sinsr-small-x4", common("student", out, train_folder) + [
        f"teacher={teacher}", "steps=2"]), progress=False).train().model_file
    binary = Trainer(load_train_config("bimacosr-small-x4", common("binary", out, train_folder) + [
        f"teacher={teacher}", f"init={student}", "steps=2", "data.degradation=realesrgan"]),
        progress=False).train().model_file
    return {"teacher": teacher, "student": student, "binary": binary, "out": out}


def count_calls(upscaler: pipelines.DiffusionUpscaler) -> list[int]:
    calls = [0]
    upscaler.model.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_teacher_student_binary_chain(chain: dict[str, Path]) -> None:
    specs = {name: read_model_spec(chain[name]) for name in ("teacher", "student", "binary")}
    assert [s.kind for s in specs.values()] == ["resshift", "onestep", "onestep"]
    assert specs["student"].network.binarize is None
    binarization = specs["binary"].network.binarize
    assert binarization.method == "bimacosr" and binarization.keep_fp == ("head", "tail.2")
    assert set(binarization.options) == set(METHODS["bimacosr"].options)  # every default written down
    lr = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    expected_calls = {"teacher": 15, "student": 1, "binary": 1}
    outputs = {}
    for name, calls_wanted in expected_calls.items():
        upscaler = pipelines.load(str(chain[name]), scale=4, steps=50)
        calls = count_calls(upscaler)
        outputs[name] = upscaler.upscale(lr)
        assert outputs[name].shape == (1, 3, 48, 48) and calls[0] == calls_wanted
        assert 0 <= outputs[name].min() and outputs[name].max() <= 1
    binary = pipelines.load(str(chain["binary"]))
    layers = [m for m in binary.model.modules() if isinstance(m, ThreeBranch)]
    assert len(layers) > 20
    # the binary student differs from its FP initialisation only through binarization and training
    assert not torch.equal(outputs["binary"], outputs["student"])


def test_one_distillation_step_lowers_the_student_teacher_mse() -> None:
    teacher = tiny_network().eval()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.02 * torch.randn_like(p))
    process = ResShift()
    distillation = SinSRDistillation(process, teacher, DistillConfig(cache_size=8))
    generator = torch.Generator().manual_seed(0)
    x0 = to_model_range(torch.rand(2, 3, 16, 16, generator=generator))
    y = to_model_range(torch.rand(2, 3, 16, 16, generator=generator))
    seeds = lambda: [torch.Generator().manual_seed(i) for i in range(2)]  # noqa: E731 - the same batch each time
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    before, _ = distillation.loss(student, x0, y, seeds())
    assert distillation.teacher_calls == 2
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    after, parts = distillation.loss(student, x0, y, seeds())
    assert after.item() < before.item()
    assert distillation.teacher_calls == 2  # the cached teacher outputs were reused
    # the loss is the MSE to the teacher's 15-step deterministic map
    x_T = distillation.start_states(y, seeds())
    target = process.teacher_map(teacher, x_T, y)
    with torch.no_grad():
        direct = torch.nn.functional.mse_loss(process.one_step(student, x_T, y), target)
    assert parts["distill"] == pytest.approx(direct.item(), rel=1e-5)


def test_teacher_outputs_on_disk_are_shared_by_runs_of_the_same_teacher(tmp_path) -> None:
    teacher, process = tiny_network().eval(), ResShift()
    config = DistillConfig(cache_dir=str(tmp_path / "cache"))
    generator = torch.Generator().manual_seed(0)
    x_T, y = (to_model_range(torch.rand(2, 3, 16, 16, generator=generator)) for _ in range(2))
    first = SinSRDistillation(process, teacher, config)
    computed = first.teacher_outputs(x_T, y)
    assert first.teacher_calls == 2 and torch.equal(computed, process.teacher_map(teacher, x_T, y))
    again = SinSRDistillation(process, copy.deepcopy(teacher), config)  # another run, the same weights
    assert torch.equal(again.teacher_outputs(x_T, y), computed) and again.teacher_calls == 0
    other = copy.deepcopy(teacher)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    changed = SinSRDistillation(process, other, config)
    changed.teacher_outputs(x_T, y)
    assert changed.teacher_calls == 2  # another teacher never reads this teacher's outputs


def test_sinsr_extra_terms() -> None:
    teacher = tiny_network().eval()
    process = ResShift()
    x0 = torch.rand(1, 3, 16, 16) * 2 - 1
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    seeds = [torch.Generator().manual_seed(0)]
    config = DistillConfig(teacher_weight=0.25, inverse_weight=0.5, consistency_weight=2.0, regression_weight=3.0)
    total, parts = SinSRDistillation(process, teacher, config).loss(teacher, x0, y, seeds)
    x_T = SinSRDistillation(process, teacher).start_states(y, [torch.Generator().manual_seed(0)])
    with torch.no_grad():
        target = process.teacher_map(teacher, x_T, y)
        zero = torch.zeros(1, dtype=torch.long)
        inverse = torch.nn.functional.mse_loss(process.predict_x0(teacher, target, y, zero), x_T)
        consistency = torch.nn.functional.mse_loss(process.one_step(teacher, process.predict_x0(teacher, x0, y, zero), y), x0)
        regression = torch.nn.functional.mse_loss(process.one_step(teacher, x_T, y), x0)
    assert parts["inverse"] == pytest.approx(inverse.item(), rel=1e-5)
    assert parts["consistency"] == pytest.approx(consistency.item(), rel=1e-5)
    assert parts["regression"] == pytest.approx(regression.item(), rel=1e-5)
    assert total.item() == pytest.approx(0.25 * parts["distill"] + 0.5 * inverse.item() + 2.0 * consistency.item()
                                         + 3.0 * regression.item(), rel=1e-5)


def test_bad_inputs_are_one_clear_error(chain: dict[str, Path], train_folder: Path, tmp_path: Path) -> None:
    base = common("bad", tmp_path, train_folder)
    with pytest.raises(BinsrError, match=r"teacher .* is a x4 model but the student is trained for x2"):
        Trainer(load_train_config("sinsr-small-x4", base + [f"teacher={chain['teacher']}", "data.scale=2"]),
                progress=False)
    with pytest.raises(BinsrError, match="is not a ResShift teacher"):
        Trainer(load_train_config("sinsr-small-x4", base + [f"teacher={chain['student']}"]), progress=False)
    with pytest.raises(ConfigError, match="jpeg_range must lie in"):
        load_train_config("bimacosr-small-x4", ["data.degradation=realesrgan", "data.realesrgan.jpeg_range=[10,300]"])
    with pytest.raises(ConfigError, match="unknown config key 'data.realesrgan.sinc_probb'"):
        load_train_config("bimacosr-small-x4", ["data.realesrgan.sinc_probb=0.2"])
    with pytest.raises(BinsrError, match="is a x4 model; x2 was requested"):
        pipelines.load(str(chain["binary"]), scale=2)


def test_sr3_file_is_not_a_teacher(train_folder: Path, tmp_path: Path) -> None:
    from test_deploy import tiny_sr3_spec, trained_file

    sr3_file = trained_file(tmp_path, tiny_sr3_spec(), "sr3")
    config = load_train_config("sinsr-small-x4", common("bad", tmp_path, train_folder) + [f"teacher={sr3_file}"])
    with pytest.raises(BinsrError, match="not a ResShift teacher"):
        Trainer(config, progress=False)


def test_compression_accounting_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["complexity", "--arch", "bimacosr-unet-small", "--size", "64", "--compare", "resshift-unet-small"]) == 0
    text = capsys.readouterr().out
    ratio = float(re.search(r"compression ratio ([\d.]+)x", text).group(1))
    speedup = float(re.search(r"OPs speedup ([\d.]+)x", text).group(1))
    from binsr.complexity import count_complexity
    fp, binary = build("resshift-unet-small"), build("bimacosr-unet-small")
    counts = [count_complexity(m, *m.example_inputs(64, 64)) for m in (fp, binary)]
    bits = [c.params_fp * 32 + c.params_binary for c in counts]
    assert ratio == pytest.approx(bits[0] / bits[1], abs=0.01)
    assert speedup == pytest.approx(counts[0].ops / counts[1].ops, abs=0.01)
    assert ratio > 3 and speedup > 3


def test_latent_space_through_the_autoencoder_interface() -> None:
    """Teacher training and sampling in a 4x latent (a lossless space-to-depth autoencoder)."""
    from binsr.models.autoencoder import Autoencoder, SpaceToDepth
    from binsr.pipelines import OneStepUpscaler, ResShiftUpscaler

    autoencoder = SpaceToDepth(4)
    assert isinstance(autoencoder, Autoencoder)
    torch.manual_seed(0)
    config = ResShiftUNetConfig(in_channels=96, out_channels=48, model_channels=16, channel_mult=(1, 2),
                                num_res_blocks=1, norm_groups=8, image_size=8, attn_res=(8,), swin_embed_dim=32,
                                head_channels=16, window_size=4)
    model, process = ResShiftUNet(config), ResShift()
    hr = torch.rand(2, 3, 32, 32)
    x0, y = autoencoder.encode(to_model_range(hr)), autoencoder.encode(to_model_range(hr.flip(-1)))
    assert x0.shape == (2, 48, 8, 8)
    loss = process.loss(model, x0, y, [torch.Generator().manual_seed(i) for i in range(2)])
    loss.backward()
    assert loss.item() > 0 and model.head.weight.grad is not None
    lr = torch.rand(1, 3, 8, 8)
    for upscaler in (ResShiftUpscaler(model, process, 4, autoencoder=autoencoder, multiple=32),
                     OneStepUpscaler(model, process, 4, autoencoder=autoencoder, multiple=32)):
        out = upscaler.upscale(lr)
        assert out.shape == (1, 3, 32, 32) and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("method, options", [
    ("xnor", {}), ("reactnet", {}), ("bbcu", {}), ("reste", {}), ("bidm", {}),
    ("bimacosr", {"use_lrmb": False, "use_smb": False}), ("bimacosr", {"use_smb": False}),
    ("bimacosr", {"use_lrmb": False}), ("bimacosr", {"rank": 4, "k": 64}),
])
def test_baselines_and_ablations_train_on_the_resshift_unet(method: str, options: dict) -> None:
    from binsr.models import apply_binarization

    model = tiny_network()
    description = apply_binarization(model, {"method": method, "options": options})
    assert description.keep_fp == ("head", "tail.2")
    assert set(description.options) == set(METHODS[method].options)  # every default written down
    out = model(torch.randn(2, 6, 32, 32), torch.tensor([14, 3]))
    out.square().mean().backward()
    binary = [m for name, m in model.named_modules() if name and type(m).__name__ in ("ThreeBranch", "BinaryConv2d",
                                                                                      "BinaryLinear")]
    assert len(binary) > 20
    assert all(p.grad is not None for m in binary for p in m.parameters() if p.requires_grad)
    branches = {type(m).__name__ for m in model.modules()}
    if method == "bimacosr":
        assert ("LowRankBranch" in branches) == options.get("use_lrmb", True)
        assert ("SparseBranch" in branches) == options.get("use_smb", True)


def test_latent_teacher_and_student_train_and_load(train_folder: Path, tmp_path: Path) -> None:
    latent = ["model.in_channels=96", "model.out_channels=48", "model.model_channels=16", "model.channel_mult=[1,2]",
              "model.num_res_blocks=1", "model.norm_groups=8", "model.image_size=8", "model.attn_res=[8]",
              "model.swin_embed_dim=32", "model.head_channels=16", "model.window_size=4",
              "autoencoder=space_to_depth"]
    teacher = Trainer(load_train_config("resshift-small-x4", common("lt", tmp_path, train_folder) + latent + ["steps=2"]),
                      progress=False).train().model_file
    student = Trainer(load_train_config("sinsr-small-x4", common("ls", tmp_path, train_folder) + [
        f"teacher={teacher}", "steps=1"]), progress=False).train().model_file
    assert read_model_spec(student).autoencoder.to_dict() == {"type": "space_to_depth", "config": {"factor": 4}}
    for path in (teacher, student):
        upscaler = pipelines.load(str(path))
        assert upscaler.autoencoder is not None and upscaler.multiple == 16
        assert upscaler.upscale(torch.rand(3, 5, 6)).shape == (3, 20, 24)
    with pytest.raises(BinsrError, match="model.in_channels / out_channels must be 96 / 48"):
        Trainer(load_train_config("resshift-small-x4", common("bad", tmp_path, train_folder) + latent[2:]),
                progress=False)


# --- a one-step student taught by any upscaler (binsr.training.imitation) ------------------------------------
def imitation_recipe(name: str, out: Path, train_folder: Path, student: Path, *extra: str):
    return load_train_config("bimacosr-realesrgan-x4-cpu", common(name, out, train_folder) + [
        "teacher=bicubic", f"init={student}", "binarize=null", "steps=2", "data.degradation=realesrgan", *extra])


def test_imitation_loss_is_its_formula_and_a_step_moves_the_student_to_the_teacher(chain: dict[str, Path]) -> None:
    from binsr.image import imresize
    from binsr.models.autoencoder import SpaceToDepth
    from binsr.training.imitation import ImitationConfig, UpscalerImitation

    student = pipelines.load_model(chain["student"])
    net = student.network
    config = ImitationConfig(teacher_weight=1.0, regression_weight=0.5, edge_weight=2.0)
    imitation = UpscalerImitation(student.process, student.autoencoder, pipelines.load("bicubic", scale=4),
                                  config, "bicubic")
    generator = torch.Generator().manual_seed(1)
    lr, hr = torch.rand(2, 3, 8, 8, generator=generator), torch.rand(2, 3, 32, 32, generator=generator)
    autoencoder = student.autoencoder or SpaceToDepth(1)  # (the tiny chain is in pixel space: an identity)
    y = autoencoder.encode(to_model_range(imresize(lr, 4.0).clamp(0, 1)))
    seeds = [torch.Generator().manual_seed(s) for s in (5, 6)]
    total, parts = imitation.loss(net, lr, hr, y, seeds)
    # the same terms recomputed by hand: image = decode(one_step)/2 + 1/2, target = bicubic(lr)
    noise = torch.stack([torch.randn(y.shape[1:], generator=torch.Generator().manual_seed(s)) for s in (5, 6)])
    with torch.no_grad():
        x0 = student.process.one_step(net, student.process.prior_sample(y, noise), y)
    image, target = (autoencoder.decode(x0) + 1) / 2, imresize(lr, 4.0).clamp(0, 1)
    expected = {"teacher": (image - target).abs().mean(), "regression": (image - hr).abs().mean(),
                "edge": sum((d(image) - d(target)).abs().mean() for d in (
                    lambda a: a[..., :, 1:] - a[..., :, :-1], lambda a: a[..., 1:, :] - a[..., :-1, :]))}
    for name, value in expected.items():
        assert parts[name] == pytest.approx(float(value), rel=1e-5)
    assert float(total.detach()) == pytest.approx(float(expected["teacher"] + 0.5 * expected["regression"]
                                               + 2.0 * expected["edge"]), rel=1e-5)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    before = UpscalerImitation(student.process, student.autoencoder, imitation.teacher, ImitationConfig(), "bicubic")
    first = float(before.loss(net, lr, hr, y, [torch.Generator().manual_seed(s) for s in (5, 6)])[0].detach())
    for _ in range(3):
        optimizer.zero_grad()
        before.loss(net, lr, hr, y, [torch.Generator().manual_seed(s) for s in (5, 6)])[0].backward()
        optimizer.step()
    assert float(before.loss(net, lr, hr, y, [torch.Generator().manual_seed(s) for s in (5, 6)])[0].detach()) < first


def test_a_binary_student_imitates_an_upscaler_and_a_second_run_reads_the_teachers_images(
        chain: dict[str, Path], train_folder: Path, tmp_path: Path) -> None:
    cache = f"imitate.cache_dir={tmp_path / 'cache'}"
    first = Trainer(imitation_recipe("first", tmp_path, train_folder, chain["binary"], cache), progress=False)
    first_file = first.train().model_file
    assert first.task.imitation.teacher_calls == 4  # 2 steps x 2 patches, each upscaled once
    spec = read_model_spec(first_file)
    assert spec.kind == "onestep" and spec.teacher == "bicubic"
    assert spec.network.binarize == read_model_spec(chain["binary"]).network.binarize  # the init's binarization
    assert spec.network.config == read_model_spec(chain["binary"]).network.config
    second = Trainer(imitation_recipe("second", tmp_path, train_folder, chain["binary"], cache,
                                      "imitate.edge_weight=1.0"), progress=False)
    second.train()
    assert second.task.imitation.teacher_calls == 0  # same data seed: every patch's teacher image from disk
    out = pipelines.load(str(first_file)).upscale(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 3, 32, 32)


def test_an_upscaler_teacher_is_checked_before_training(chain: dict[str, Path], train_folder: Path,
                                                         tmp_path: Path) -> None:
    with pytest.raises(BinsrError, match="is not a ResShift teacher: name the student's model file as 'init'"):
        Trainer(imitation_recipe("bad", tmp_path, train_folder, chain["binary"], "init=null"), progress=False)
    with pytest.raises(BinsrError, match="its losses are 'imitate', not 'distill'"):
        Trainer(imitation_recipe("bad", tmp_path, train_folder, chain["binary"], "distill.teacher_weight=0.5"),
                progress=False)
    with pytest.raises(BinsrError, match="is a ResShift teacher: its losses are 'distill'"):
        Trainer(imitation_recipe("bad", tmp_path, train_folder, chain["binary"], f"teacher={chain['teacher']}"),
                progress=False)
    with pytest.raises(BinsrError, match="is already binarized"):
        Trainer(imitation_recipe("bad", tmp_path, train_folder, chain["binary"], "binarize={method: xnor}"),
                progress=False)
    with pytest.raises(ConfigError, match="loss must be one of l1, mse"):
        imitation_recipe("bad", tmp_path, train_folder, chain["binary"], "imitate.loss=l3")
    if pipelines.peers_installed():
        with pytest.raises(BinsrError, match="is a x2 model; x4 was requested"):
            Trainer(imitation_recipe("bad", tmp_path, train_folder, chain["binary"],
                                     "teacher=realesr-animevideov3-x2"), progress=False)


@pytest.mark.skipif(not pipelines.peers_installed(), reason="needs the peers extra")
def test_real_esrgan_teaches_through_the_recipe_as_shipped(chain: dict[str, Path], train_folder: Path,
                                                           tmp_path: Path) -> None:
    from binsr.training.imitation import teacher_fingerprint

    config = imitation_recipe("esrgan", tmp_path, train_folder, chain["binary"], "teacher=realesrgan-x4plus",
                              "steps=1", f"imitate.cache_dir={tmp_path / 'cache'}")
    trainer = Trainer(config, progress=False)
    model_file = trainer.train().model_file
    assert trainer.task.imitation.teacher_calls == 2
    assert teacher_fingerprint("realesrgan-x4plus") != teacher_fingerprint("realesrgan-x4plus-anime")
    assert read_model_spec(model_file).teacher == "realesrgan-x4plus"


# --- the adversarial loss (binsr.training.adversary) --------------------------------------------------------
def test_adversary_losses_are_their_formulas_and_only_its_update_trains_the_discriminator() -> None:
    from binsr.training.adversary import Adversary, AdversaryConfig

    torch.manual_seed(0)
    adversary = Adversary(AdversaryConfig(weight=0.1, channels=4, lr=1e-2))
    real, fake = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16, requires_grad=True)
    before = {k: v.clone() for k, v in adversary.discriminator.state_dict().items()}
    loss = adversary.generator_loss(fake, real)
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # the student gets a gradient …
    assert all(p.grad is None for p in adversary.discriminator.parameters())  # … D none, and D is unchanged
    assert all(torch.equal(before[k], v) for k, v in adversary.discriminator.state_dict().items())
    # float64 re-computation: mean log(1 + exp(-D(fake))), with D's effective (spectrally normalised) weights
    discriminator = adversary.discriminator.eval()
    with torch.no_grad():
        logits = discriminator(fake.detach()).double()
        assert float(loss) == pytest.approx(float(torch.log1p(torch.exp(-logits)).mean()), rel=1e-5)
        d_real, d_fake = discriminator(real).double(), logits
        expected_d = float(torch.log1p(torch.exp(-d_real)).mean() + torch.log1p(torch.exp(d_fake)).mean())
    discriminator.train()
    state = {k: v.clone() for k, v in discriminator.state_dict().items()}
    assert adversary.update() == pytest.approx(expected_d, rel=1e-3)  # (a power iteration moves σ a little)
    assert any(not torch.equal(state[k], v) for k, v in discriminator.state_dict().items())
    with pytest.raises(RuntimeError, match="before any generator_loss"):
        adversary.update()  # each batch trains D once
    # a few updates on fixed batches teach D to tell them apart
    first = None
    for _ in range(30):
        adversary.generator_loss(fake.detach(), real)
        value = adversary.update()
        first = value if first is None else first
    assert value < first


def test_an_adversarial_run_resumes_bit_exactly_with_its_discriminator(chain: dict[str, Path], train_folder: Path,
                                                                        tmp_path: Path) -> None:
    adversarial = ("imitate.adversarial={weight: 0.5, channels: 4, real: teacher}", "ckpt_every=1", "steps=3",
                   "keep_checkpoints=3")
    full = Trainer(imitation_recipe("full", tmp_path, train_folder, chain["binary"], *adversarial), progress=False)
    full.train()
    assert full.critic is full.task.imitation.adversary and full.critic is not None
    # the run as a kill after step 1 leaves it: its first checkpoint only
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    for later in ("step_00000002", "step_00000003"):
        shutil.rmtree(tmp_path / "cut" / "checkpoints" / later)
    (tmp_path / "cut" / "checkpoints" / "latest").write_text("step_00000001")
    resumed = Trainer(imitation_recipe("cut", tmp_path, train_folder, chain["binary"], *adversarial), resume=True,
                      progress=False)
    assert resumed.step == 1
    resumed.train()
    for mine, theirs in ((full.model, resumed.model), (full.critic.discriminator, resumed.critic.discriminator)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    d_state = full.critic.optimizer.state_dict()["state"]
    assert d_state and all(int(s["step"]) == 3 for s in d_state.values())  # D took one step per student step
    with pytest.raises(ConfigError, match="weight must be > 0"):
        imitation_recipe("bad", tmp_path, train_folder, chain["binary"], "imitate.adversarial={weight: 0}")
    with pytest.raises(ConfigError, match="real must be one of hr, teacher"):
        imitation_recipe("bad", tmp_path, train_folder, chain["binary"], "imitate.adversarial={real: lr}")
