"""``binsr train``: train from a recipe."""

from __future__ import annotations

import argparse


def add_train(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train a model from a YAML recipe or a named preset",
        description="Train with a recipe (a YAML file or a preset name). Checkpoints are written atomically to "
                    "OUT_DIR/NAME/checkpoints; --resume continues bit-exactly from the last one. Multi-GPU or "
                    "multi-node: start the same command with torchrun.",
        epilog="example: binsr train bidiffsr-small-x4 --set steps=2000 --set data.batch_size=4",
    )
    p.add_argument("config", help="recipe file (.yaml) or preset name")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of the run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe key "
                   "(dotted, e.g. optim.lr=2e-4; repeatable)")
    p.add_argument("--data-root", metavar="DIR", help="data root for dataset names (overrides $BINSR_DATA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from binsr.training import Trainer, load_train_config

    config = load_train_config(args.config, args.set)
    result = Trainer(config, resume=args.resume, data_root=args.data_root, progress=not args.quiet).train()
    val = f", validation PSNR {result.val_psnr:.3f} dB" if result.val_psnr is not None else ""
    print(f"trained {result.steps} steps (last loss {result.final_loss:.4f}{val}); model: {result.model_file}")
    return 0
