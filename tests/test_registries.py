"""One registry per concept: a component added in one file is trained, saved, loaded and run by the library."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import binsr
from binsr.errors import BinsrError
from binsr.evaluation import describe_model
from binsr.pipelines import PIPELINES, pipeline_type, read_model_spec
from binsr.training import TASKS, Trainer
from binsr.training.config import train_config_from_dict

TINY_RESSHIFT = {"preset": "resshift-unet", "model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                 "norm_groups": 8, "image_size": 32, "attn_res": [16], "swin_embed_dim": 32, "head_channels": 16,
                 "window_size": 4}


def run_recipe(recipe: dict, train_folder: Path, out: Path) -> Path:
    """One training step of ``recipe`` on the test images; the model file it saves."""
    recipe = {"out_dir": str(out), "steps": 1, "ckpt_every": 0, **recipe,
              "data": {"train": str(train_folder), "val": None, "patch_size": 32, "batch_size": 2}}
    return Trainer(train_config_from_dict(recipe), progress=False).train().model_file


def upscales(model_file: Path) -> torch.Tensor:
    """The model file loaded by name and run on a seeded 12 x 12 image (twice: the same output)."""
    lr = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    out = binsr.load(str(model_file)).upscale(lr)
    assert out.shape == (1, 3, 48, 48) and torch.isfinite(out).all()
    assert torch.equal(out, binsr.load(str(model_file)).upscale(lr))
    return out


def test_a_pipeline_added_in_one_file_trains_saves_loads_and_upscales(train_folder: Path, tmp_path: Path) -> None:
    from plugins.two_step import KIND, TwoStepRecipe, TwoStepTask, TwoStepUpscaler

    assert pipeline_type(KIND) is TwoStepUpscaler and TASKS.get(KIND) is TwoStepTask
    assert type(train_config_from_dict({"task": KIND})) is TwoStepRecipe
    model_file = run_recipe({"task": KIND, "name": "two", "model": TINY_RESSHIFT}, train_folder, tmp_path)
    spec = read_model_spec(model_file)
    assert spec.kind == KIND and spec.recipe["task"] == KIND
    assert describe_model(str(model_file), count=False)["sampling"] == "2 network calls"
    upscaler = binsr.load(str(model_file))
    assert type(upscaler) is TwoStepUpscaler
    calls = []
    upscaler.model.register_forward_hook(lambda *args: calls.append(1))
    upscaler.upscale(torch.rand(1, 3, 12, 12))
    assert len(calls) == 2
    upscales(model_file)


def test_model_kinds_are_the_registered_pipelines() -> None:
    assert {"sr3", "resshift", "onestep"} <= set(PIPELINES.names())
    for kind in ("sr3", "resshift", "onestep"):
        pipeline = pipeline_type(kind)
        assert pipeline.kind == kind and TASKS.get(kind).pipeline is pipeline
        assert TASKS.get(kind).recipe.task == kind
    assert pipeline_type("sr3").takes_steps and not pipeline_type("onestep").takes_steps
    with pytest.raises(BinsrError, match="unknown pipeline 'two-step-flow' \\(known: .*onestep"):
        pipeline_type("two-step-flow")


def test_the_old_task_name_still_loads_with_one_line_saying_what_to_rename() -> None:
    with pytest.warns(UserWarning, match="task 'distill' is now called 'onestep'"):
        recipe = train_config_from_dict({"task": "distill", "teacher": "t.safetensors"})
    assert recipe.task == "onestep" and recipe.teacher == "t.safetensors"


def test_network_presets_are_one_registry_with_names_apart_from_methods_and_shipped_models() -> None:
    from binsr.binary import METHODS
    from binsr.models import PRESETS, build, network_preset
    from binsr.pipelines import shipped_models

    names = set(PRESETS.names())
    assert {"bidiffsr-unet", "sr3-unet", "bimacosr-unet", "resshift-unet-cpu"} <= names
    assert not names & set(METHODS.names()) and not names & set(shipped_models())
    preset = network_preset("bimacosr-unet-small")
    network = build("bimacosr-unet-small")
    assert preset.spec().binarize.method == "bimacosr" and preset.type == "resshift_unet"
    assert sum(p.numel() for p in network.parameters()) == sum(p.numel() for p in preset.build().parameters())
    with pytest.warns(UserWarning, match="network preset 'bidiffsr-small' is now called 'bidiffsr-unet-small'"):
        assert network_preset("bidiffsr-small") is network_preset("bidiffsr-unet-small")


def test_an_old_recipe_with_old_preset_names_still_loads(tmp_path: Path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("name: old\ntask: distill\nteacher: t.safetensors\n")
    from binsr.training import load_train_config

    with pytest.warns(UserWarning, match="task 'distill' is now called 'onestep'"):
        assert load_train_config(str(old)).task == "onestep"
    old.write_text("name: old\nmodel: {preset: bidiffsr-small}\n")
    with pytest.warns(UserWarning, match="is now called 'bidiffsr-unet-small'"):
        recipe = load_train_config(str(old))
    assert recipe.model.inner_channel == 32 and recipe.binarize.method == "bidiffsr"
    old.write_text("name: old\ntask: resshift\nmodel: {preset: bimacosr-unet-small}\n")
    with pytest.raises(BinsrError, match="is binarized; a ResShift teacher trains in full precision"):
        load_train_config(str(old))


def test_a_preset_and_a_method_added_in_one_file_each_train_save_load_and_upscale(train_folder: Path,
                                                                                    tmp_path: Path) -> None:
    from plugins import sign_method, tiny_preset

    from binsr.cli import main

    teacher = run_recipe({"task": "resshift", "name": "teacher", "model": {"preset": tiny_preset.NAME}},
                         train_folder, tmp_path)
    assert read_model_spec(teacher).network.config.model_channels == 16
    upscales(teacher)
    student = run_recipe({"task": "onestep", "name": "student", "teacher": str(teacher),
                          "binarize": {"method": sign_method.NAME}}, train_folder, tmp_path)
    assert read_model_spec(student).method == sign_method.NAME
    simulated = upscales(student)
    packed_file = tmp_path / "student.packed.safetensors"
    assert main(["export", str(student), "-o", str(packed_file)]) == 0  # the kernels pack the new method too
    assert read_model_spec(packed_file).packed
    assert (upscales(packed_file) - simulated).abs().max() < 1e-3
