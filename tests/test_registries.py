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

TINY_RESSHIFT = {"preset": "resshift", "model_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                 "norm_groups": 8, "image_size": 32, "attn_res": [16], "swin_embed_dim": 32, "head_channels": 16,
                 "window_size": 4}


def test_a_pipeline_added_in_one_file_trains_saves_loads_and_upscales(train_folder: Path, tmp_path: Path) -> None:
    from plugins.two_step import KIND, TwoStepRecipe, TwoStepTask, TwoStepUpscaler

    assert pipeline_type(KIND) is TwoStepUpscaler and TASKS.get(KIND) is TwoStepTask
    recipe = train_config_from_dict({
        "task": KIND, "name": "two", "out_dir": str(tmp_path), "model": TINY_RESSHIFT, "steps": 1,
        "data": {"train": str(train_folder), "val": None, "patch_size": 32, "batch_size": 2}, "ckpt_every": 0})
    assert type(recipe) is TwoStepRecipe and recipe.task == KIND
    model_file = Trainer(recipe, progress=False).train().model_file
    spec = read_model_spec(model_file)
    assert spec.kind == KIND and spec.recipe["task"] == KIND
    assert describe_model(str(model_file), count=False)["sampling"] == "2 network calls"
    upscaler = binsr.load(str(model_file))
    assert type(upscaler) is TwoStepUpscaler
    calls = []
    upscaler.model.register_forward_hook(lambda *args: calls.append(1))
    lr = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    out = upscaler.upscale(lr)
    assert out.shape == (1, 3, 48, 48) and len(calls) == 2 and torch.isfinite(out).all()
    assert torch.equal(out, binsr.load(str(model_file)).upscale(lr))  # seeded: the same output again


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
