"""``binsr train``: train from a recipe."""

from __future__ import annotations

import argparse
import math


def add_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train a model from a YAML recipe or a named preset",
        description="Train with a recipe (a YAML file or a preset name). Checkpoints are written atomically to "
                    "OUT_DIR/NAME/checkpoints; --resume continues bit-exactly from the last one. Multi-GPU or "
                    "multi-node: start the same command with torchrun (with --max-restarts, add --auto-resume and set "
                    "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1; see the README).",
        epilog="example: binsr train bidiffsr-small-x4 --set steps=2000 --set data.batch_size=4 ('binsr train "
               "--list' shows the preset recipes by task and the network presets by type)",
    )
    p.add_argument("config", nargs="?", help="recipe file (.yaml) or preset name")
    p.add_argument("--list", action="store_true", help="list the preset recipes by task (the pipeline kind they "
                   "train) and the network presets (model.preset) by network type, then exit")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help="continue from the newest intact checkpoint of the "
                        "run (a damaged newest one is named and the one before it used)")
    resume.add_argument("--auto-resume", action="store_true", help="continue if the run has checkpoints, else "
                        "start it: for torchrun --max-restarts, which starts the same command again after a failure")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key "
                   "(dotted, e.g. optim.lr=2e-4; repeatable)")
    p.add_argument("--data-root", metavar="DIR", help="data root for dataset names (overrides $BINSR_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from binsr.errors import BinsrError
    from binsr.training import Trainer, load_train_config

    if args.list:
        print(_listing())
        return 0
    if args.config is None:
        raise BinsrError("give a recipe file or preset name (binsr train --list shows the presets)")
    config = load_train_config(args.config, args.set)
    result = Trainer(config, resume="auto" if args.auto_resume else args.resume, data_root=args.data_root, progress=not args.quiet).train()
    facts = [] if math.isnan(result.final_loss) else [f"last loss {result.final_loss:.4f}"]  # nan: no step left to run
    facts += [f"validation PSNR {result.val_psnr:.3f} dB"] if result.val_psnr is not None else []
    detail = f" ({', '.join(facts)})" if facts else ""
    print(f"trained {result.steps} steps{detail}; model: {result.model_file}")
    return 0


def _listing() -> str:
    """The preset recipes grouped by task, each task's pipeline, and the network presets grouped by type."""
    from collections import defaultdict

    from binsr.models import PRESETS
    from binsr.training import TASKS, load_train_config, preset_names

    recipes: dict[str, list[str]] = defaultdict(list)
    for name in preset_names():
        recipes[load_train_config(name).task].append(name)
    lines = ["preset recipes, by task (a recipe's 'task:', the pipeline kind it trains):"]
    for task in TASKS.names():
        lines.append(f"  {task} ({TASKS.get(task).recipe.__name__}): {', '.join(recipes[task]) or '-'}")
    networks: dict[str, list[str]] = defaultdict(list)
    for name in PRESETS.names():
        preset = PRESETS.get(name)
        method = preset.binarize["method"] if preset.binarize else "full precision"
        networks[preset.type].append(f"{name} ({method})")
    lines.append("network presets, by network type (a recipe's 'model.preset:', binsr complexity --arch):")
    lines += [f"  {kind}: {', '.join(names)}" for kind, names in sorted(networks.items())]
    return "\n".join(lines)
