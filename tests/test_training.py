"""Training engine: bit-exact resume after a kill, DDP = one process with the doubled batch, recipe
errors, and checkpoints that do not fit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from binsr.config import ConfigError
from binsr.errors import BinsrError
from binsr.training import Trainer, load_train_config


def recipe(out_dir, train_folder, name, *extra):
    sets = [f"name={name}", f"out_dir={out_dir}", f"data.train={train_folder}", "data.val=null", "data.patch_size=32",
            "log_every=1", "optim.warmup_steps=3", *extra]
    return [arg for s in sets for arg in ("--set", s)]


def binsr_cmd(*args):
    return [sys.executable, "-m", "binsr", *args]


def final_weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


def test_resume_after_kill_is_bit_exact(tmp_path, train_folder):
    common = ["steps=40", "ckpt_every=2", "data.batch_size=2"]
    subprocess.run(binsr_cmd("train", "bidiffsr-small-x4", "--quiet", *recipe(tmp_path, train_folder, "full", *common)),
                   check=True, capture_output=True)
    cut = tmp_path / "cut"
    proc = subprocess.Popen(binsr_cmd("train", "bidiffsr-small-x4", "--quiet", *recipe(tmp_path, train_folder, "cut", *common)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        latest = cut / "checkpoints" / "latest"
        if latest.is_file() and latest.read_text() >= "step_00000006":
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up, as with a power cut
    proc.wait()
    killed_at = (cut / "checkpoints" / "latest").read_text()
    assert killed_at < "step_00000040" and not (cut / "model.safetensors").exists(), "the run finished before the kill"
    subprocess.run(binsr_cmd("train", "bidiffsr-small-x4", "--quiet", "--resume",
                             *recipe(tmp_path, train_folder, "cut", *common)), check=True, capture_output=True)
    full, resumed = final_weights(tmp_path / "full"), final_weights(cut)
    assert full.keys() == resumed.keys()
    assert all(torch.equal(full[k], resumed[k]) for k in full), f"resumed from {killed_at} differs"
    rows = (cut / "log.csv").read_text().splitlines()[1:]
    steps = [int(r.split(",")[0]) for r in rows]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 40  # no duplicated rows after the resume
    again = subprocess.run(binsr_cmd("train", "bidiffsr-small-x4", "--quiet", "--auto-resume",
                                     *recipe(tmp_path, train_folder, "cut", *common)), check=True, capture_output=True, text=True)
    assert again.stdout.startswith("trained 40 steps") and "nan" not in again.stdout  # a finished run: no step left
    assert all(torch.equal(resumed[k], v) for k, v in final_weights(cut).items())


def test_ddp_two_processes_equal_one_process_with_double_batch(tmp_path, train_folder):
    """Same samples, noise and timesteps: every step's loss agrees closely. The weights agree only to about Adam's
    step size, since Adam turns the last-bit differences of two reduction orders in near-zero gradients into
    ±lr updates (how large depends on the CPU's kernels)."""
    common = ["steps=4", "ckpt_every=0", "optim.ema_decay=null", "log_every=1"]
    subprocess.run(binsr_cmd("train", "bidiffsr-small-x4", "--quiet",
                             *recipe(tmp_path, train_folder, "single", *common, "data.batch_size=4")),
                   check=True, capture_output=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "binsr",
                    "train", "bidiffsr-small-x4", "--quiet",
                    *recipe(tmp_path, train_folder, "ddp", *common, "data.batch_size=2", "device=cpu")],
                   check=True, capture_output=True, env=env)
    losses = [[float(row.split(",")[1]) for row in (tmp_path / run / "log.csv").read_text().splitlines()[1:]
               if row.split(",")[1]] for run in ("single", "ddp")]
    assert len(losses[0]) == len(losses[1]) == 4
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-5)  # the first step: same batch, same weights
    assert losses[0] == pytest.approx(losses[1], rel=1e-2)
    single, ddp = final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp")
    worst = max((single[k] - ddp[k]).abs().max().item() for k in single)
    assert worst < 2 * 4 * 2e-4, f"largest weight difference {worst}"  # within two Adam steps of lr 2e-4 each
    changed = max((single[k] - Trainer_initial(k)).abs().max().item() for k in ["head.weight"])
    assert changed > 1e-4  # training did move the weights


def Trainer_initial(key):  # noqa: N802 - the weights a run starts from (seeded)
    torch.manual_seed(0)
    from binsr.models import NetworkSpec, apply_binarization, network_preset
    from binsr.models.presets import BIDIFFSR_BINARIZATION

    network = NetworkSpec.of(network_preset("bidiffsr-unet-small").config).build()
    apply_binarization(network, BIDIFFSR_BINARIZATION)
    return network.state_dict()[key]


def test_recipe_errors_are_clear():
    with pytest.raises(ConfigError, match="unknown config key 'optim.l_r'; did you mean 'lr'"):
        load_train_config("bidiffsr-small-x4", ["optim.l_r=1e-3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.learning_rate' \(valid: name, lr, betas"):
        load_train_config("bidiffsr-small-x4", ["optim.learning_rate=1e-3"])
    assert load_train_config("bidiffsr-small-x4", ["optim.lr=1e-3"]).optim.lr == 1e-3  # YAML 1.1 reads 1e-3 as text
    with pytest.raises(ConfigError, match="unknown config key 'model.chanels'"):
        load_train_config("bidiffsr-small-x4", ["model.chanels=3"])
    with pytest.raises(ConfigError, match="must be a number"):
        load_train_config("bidiffsr-small-x4", ["steps=true"])
    with pytest.raises(ConfigError, match="patch_size 30 must be a multiple"):
        load_train_config("bidiffsr-small-x4", ["data.patch_size=30"])
    with pytest.raises(ConfigError, match="model.preset: unknown network preset 'bigger'"):
        load_train_config("bidiffsr-small-x4", ["model.preset=bigger"])
    assert load_train_config("bidiffsr-x4-paper").model.inner_channel == 64  # the paper recipe loads
    with pytest.warns(UserWarning, match="is now called .bidiffsr-x4-paper."):  # and by its old name
        assert load_train_config("bidiffsr-x4").name == "bidiffsr-x4-paper"


def test_resume_rejects_another_architecture_and_fresh_runs_refuse_to_overwrite(tmp_path, train_folder):
    sets = [s for s in recipe(tmp_path, train_folder, "arch", "steps=2", "ckpt_every=2") if s != "--set"]
    Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False).train()
    with pytest.raises(BinsrError, match="already has checkpoints: pass --resume"):
        Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False)
    other = load_train_config("bidiffsr-small-x4", [*sets, "model.inner_channel=16", "model.norm_groups=4"])
    with pytest.raises(BinsrError, match="does not fit this architecture"):
        Trainer(other, resume=True, progress=False)


def test_every_shipped_recipe_loads_and_is_named_after_its_file():
    from binsr.training.config import preset_names

    names = preset_names()
    assert {"resshift-x4-cpu", "bidiffsr-x4-paper", "bimacosr-small-x4"} <= set(names)
    for name in names:
        assert load_train_config(name).name == name


def _children(pid):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_node_run(tmp_path, train_folder, name, kill_at=None):
    """Two torchrun agents (one process each) meeting by c10d rendezvous on 127.0.0.1, as two machines would;
    with ``kill_at``, node 1's worker is SIGKILLed once that checkpoint exists, and torchrun restarts it."""
    port = _free_port()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id={name}", "--max-restarts=1",
               "-m", "binsr", "train", "bidiffsr-small-x4", "--quiet", "--auto-resume",
               *recipe(tmp_path, train_folder, name, "steps=16", "ckpt_every=2", "data.batch_size=2", "device=cpu",
                       "optim.ema_decay=null")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    agents = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    killed = None
    if kill_at is not None:
        latest, deadline = tmp_path / name / "checkpoints" / "latest", time.time() + 120
        while time.time() < deadline and killed is None:
            if latest.is_file() and latest.read_text() >= kill_at:
                workers = _children(agents[1].pid)
                if workers:
                    os.kill(workers[0], signal.SIGKILL)
                    killed = latest.read_text()
            time.sleep(0.01)
    logs = [agent.communicate(timeout=int(os.environ.get("TWO_NODE_TIMEOUT", "300")))[0].decode() for agent in agents]
    if [agent.returncode for agent in agents] != [0, 0]:
        (tmp_path / f"{name}-agents.log").write_text("\n=====\n".join(logs))
    assert [agent.returncode for agent in agents] == [0, 0], logs
    return final_weights(tmp_path / name), killed, logs


def test_two_node_torchrun_restarts_a_killed_worker_and_resumes_to_the_same_result(tmp_path, train_folder):
    whole, _, _ = _two_node_run(tmp_path, train_folder, "whole")
    restarted, killed, logs = _two_node_run(tmp_path, train_folder, "restarted", kill_at="step_00000004")
    assert killed is not None and killed < "step_00000016", "the run finished before the kill"
    assert any("restart" in log.lower() or "SIGKILL" in log or "Signals.SIGKILL" in log for log in logs), logs
    assert whole.keys() == restarted.keys()
    assert all(torch.equal(whole[k], restarted[k]) for k in whole), f"killed at {killed}: the weights differ"
    rows = (tmp_path / "restarted" / "log.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 17))  # the log holds each step once


def _sets(tmp_path, train_folder, name, *extra):
    return [s for s in recipe(tmp_path, train_folder, name, *extra) if s != "--set"]


@pytest.mark.parametrize("damage", ["state.pt", "model.safetensors"])
def test_a_damaged_newest_checkpoint_is_named_and_the_one_before_it_resumed(tmp_path, train_folder, damage):
    from binsr.errors import BinsrWarning

    sets = _sets(tmp_path, train_folder, "run", "steps=6", "ckpt_every=2", "keep_checkpoints=3")
    Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False).train()
    finished = final_weights(tmp_path / "run")
    newest = tmp_path / "run" / "checkpoints" / "step_00000006" / damage
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle, as from bit rot
    newest.write_bytes(bytes(data))
    (tmp_path / "run" / "model.safetensors").unlink()
    with pytest.warns(BinsrWarning, match=rf"step_00000006/{damage}: corrupt .*; resuming from step_00000004"):
        trainer = Trainer(load_train_config("bidiffsr-small-x4", sets), resume=True, progress=False)
    assert trainer.step == 4
    trainer.train()
    resumed = final_weights(tmp_path / "run")
    assert all(torch.equal(finished[k], resumed[k]) for k in finished)


def test_no_intact_checkpoint_is_one_error_naming_the_files(tmp_path, train_folder):
    sets = _sets(tmp_path, train_folder, "run", "steps=2", "ckpt_every=2", "keep_checkpoints=1")
    Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False).train()
    (tmp_path / "run" / "checkpoints" / "step_00000002" / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BinsrError, match=r"--resume: no intact checkpoint .*step_00000002/state.pt: corrupt"):
        Trainer(load_train_config("bidiffsr-small-x4", sets), resume=True, progress=False)


def test_checkpoints_carry_a_manifest_of_checked_files(tmp_path, train_folder):
    import hashlib
    import json

    sets = _sets(tmp_path, train_folder, "run", "steps=2", "ckpt_every=2", "optim.ema_decay=0.9")
    Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False).train()
    folder = tmp_path / "run" / "checkpoints" / "step_00000002"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert sorted(manifest) == ["ema.safetensors", "model.safetensors", "state.pt"]
    assert all(hashlib.sha256((folder / n).read_bytes()).hexdigest() == d for n, d in manifest.items())


def test_the_last_checkpoint_and_model_come_before_the_final_validation(tmp_path, train_folder, monkeypatch):
    sets = _sets(tmp_path, train_folder, "run", "steps=2", "ckpt_every=0", "data.val=" + str(train_folder))
    trainer = Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False)

    def killed(self):
        raise KeyboardInterrupt  # a kill during the end-of-run validation

    monkeypatch.setattr(Trainer, "validate", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step_00000002"
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_validation_scores_central_crops_with_a_bound(tmp_path, train_folder):
    sets = _sets(tmp_path, train_folder, "run", "steps=1", "data.val=" + str(train_folder), "data.val_crop=32",
                 "data.val_limit=2", "val_steps=2")
    trainer = Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False)
    seen = []
    upscaler = trainer.task.upscaler

    def recording(net):
        made = upscaler(net)
        original = made.upscale
        made.upscale = lambda lr, *a, **k: seen.append(tuple(lr.shape[-2:])) or original(lr, *a, **k)
        return made

    trainer.task.upscaler = recording
    assert 0 < trainer.validate() < 100
    assert seen == [(8, 8), (8, 8)]  # 32² HR pixels at x4, of the first two images


def test_a_model_trained_on_real_degradations_is_validated_on_them(tmp_path, train_folder):
    from binsr.data import SREvalDataset
    from binsr.data.degraded_set import degrade_folder
    from binsr.metrics import psnr

    sets = _sets(tmp_path, train_folder, "run", "steps=1", "data.val=" + str(train_folder), "data.val_crop=null",
                 "data.val_limit=1", "data.degradation=realesrgan")
    trainer = Trainer(load_train_config("bidiffsr-small-x4", sets), progress=False)
    degrade_folder(train_folder, tmp_path / "real", scale=4, seed=0)  # what 'binsr degrade VAL' writes
    sample = SREvalDataset(train_folder, 4, lr_dir=tmp_path / "real")[0]
    with torch.no_grad():
        sr = trainer.task.upscaler(trainer.ema if trainer.ema is not None else trainer.model).upscale(sample["lr"][None])
    assert trainer.validate() == pytest.approx(float(psnr(sr[0], sample["hr"], crop_border=4)), abs=1e-9)


def test_data_workers_live_across_epochs_and_draw_the_patches_of_the_inline_loader(tmp_path, train_folder, monkeypatch):
    """One DataLoader serves every epoch (its workers are not restarted each epoch, which starved a GPU on
    small datasets); each index carries its epoch, so 2 workers give the batches that no worker gives, from
    any step on, across epoch boundaries (5 images, batch 2: 2 steps an epoch)."""
    sets = recipe(tmp_path, train_folder, "loader", "data.batch_size=2")[1::2]  # the KEY=VALUE of each --set

    def first_batches(workers: int, step: int, count: int = 5) -> list[torch.Tensor]:
        trainer = Trainer(load_train_config("bidiffsr-small-x4", [*sets, f"data.num_workers={workers}"]), progress=False)
        trainer.step = step
        return [torch.cat([lr.flatten(), hr.flatten()]) for (lr, hr), _ in zip(trainer.batches(), range(count))]

    from binsr.training import engine

    loaders = []
    monkeypatch.setattr(engine, "DataLoader", lambda *a, **k: loaders.append(1) or torch.utils.data.DataLoader(*a, **k))
    inline = first_batches(0, 0, 7)
    assert len(loaders) == 1  # 7 batches, 4 epochs, one loader
    assert not torch.equal(inline[0], inline[2])  # epoch 1 draws new patches
    assert all(torch.equal(a, b) for a, b in zip(first_batches(2, 0, 7), inline))
    assert all(torch.equal(a, b) for a, b in zip(first_batches(2, 3), inline[3:]))  # resumed mid-epoch


def test_a_binarize_option_refines_the_presets_binarization_and_keeps_its_method():
    """--set binarize.options.X=… on a BI-DiffSR recipe changes that option only: it once swapped the method for
    the dataclass default (bimacosr), which has no such option."""
    recipe = load_train_config("bidiffsr-x2-cpu", ["binarize.options.timestep_groups=1",
                                                   "binarize.options.residual=false"])
    assert (recipe.binarize.method, recipe.binarize.options) == ("bidiffsr", {"timestep_groups": 1, "residual": False})
    assert load_train_config("bidiffsr-x2-cpu", ["binarize.method=xnor", "binarize.options={}"]).binarize.method == "xnor"
    assert load_train_config("bidiffsr-x2-cpu").binarize.options == {"timestep_groups": 5}


def test_the_ema_warms_up_like_diffusers_ema_so_a_short_run_is_not_its_initial_weights(tmp_path, train_folder):
    from binsr.training.engine import ema_decay

    sets = _sets(tmp_path, train_folder, "run", "steps=3", "ckpt_every=1", "keep_checkpoints=3",
                 "optim.ema_decay=0.999")
    config = load_train_config("bidiffsr-small-x4", sets)
    Trainer(config, progress=False).train()
    folder = tmp_path / "run" / "checkpoints"
    before = load_file(folder / "step_00000002" / "ema.safetensors")
    weights = load_file(folder / "step_00000003" / "model.safetensors")
    after = load_file(folder / "step_00000003" / "ema.safetensors")
    decay = ema_decay(config.optim, 2)  # the update after the third step (0-based 2)
    assert decay == min(0.999, 3 / 12) == 0.25
    moved = 0
    for name, value in after.items():
        if not value.is_floating_point():
            continue
        expected = decay * before[name].double() + (1 - decay) * weights[name].double()
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-5)
        moved += int(not torch.equal(before[name], weights[name]))
    assert moved > 0  # the check compared weights that training changed
    off = load_train_config("bidiffsr-small-x4", [*sets, "optim.ema_warmup=false"])
    assert ema_decay(off.optim, 2) == 0.999
