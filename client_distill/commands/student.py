"""``vl2v pretrain-student``: pretrain a student on the synthetic world (its ImageNet stand-in)."""

from __future__ import annotations

import argparse

from client_distill.buy.settings import ClientSettings
from client_distill.errors import UsageError
from client_distill.train.pretrain_student_config import BROAD_STYLES, DEFAULT_ARCH, PretrainConfig


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    defaults = PretrainConfig()
    p = subparsers.add_parser(
        "pretrain-student",
        help="train a timm backbone on a corpus of the synthetic world (the ImageNet stand-in)",
        description="Supervised pretraining on every world class in the corpus styles; resumable from <out>.partial/.",
    )
    p.add_argument("--arch", default=DEFAULT_ARCH, help=f"timm model name (default {DEFAULT_ARCH})")
    p.add_argument(
        "--styles",
        default=",".join(BROAD_STYLES),
        help=f"comma-separated corpus styles (default {','.join(BROAD_STYLES)}: no client domain but photo; "
        "'photo' alone "
        "gives the photo-only student)",
    )
    p.add_argument("--lr", type=float, default=defaults.lr, help=f"AdamW peak learning rate (default {defaults.lr})")
    p.add_argument("--out", required=True, help="checkpoint to write; create_student(PATH) loads it")
    p.add_argument("--steps", type=int, default=defaults.steps, help=f"optimisation steps (default {defaults.steps})")
    p.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help=f"images per step (default {defaults.batch_size})"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help=f"seed of the rendered corpus and of training (default {defaults.seed})",
    )
    p.add_argument("--size", type=int, default=defaults.size, help="image size in pixels")
    p.add_argument(
        "--pool-per-class", type=int, default=defaults.pool_per_class, help="images rendered per class and style"
    )
    p.add_argument(
        "--eval-per-class", type=int, default=defaults.eval_per_class, help="test images per class and style"
    )
    p.add_argument(
        "--stop-after", type=int, default=None, metavar="STEP", help="stop resumably once STEP steps are done"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    if (
        args.steps < 1
        or args.batch_size < 1
        or args.size < 16
        or min(args.pool_per_class, args.eval_per_class) < 1
        or args.lr <= 0
    ):
        raise UsageError(
            "--steps, --batch-size, --pool-per-class, --eval-per-class and --lr must be positive and --size at least 16"
        )
    import torch  # torch and timm only once a command needs them: `vl2v --help` stays instant

    from client_distill.train.pretrain_student import pretrain_student

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    config = PretrainConfig(
        arch=args.arch,
        styles=tuple(s.strip() for s in args.styles.split(",") if s.strip()),
        lr=args.lr,
        steps=args.steps,
        batch_size=args.batch_size,
        size=args.size,
        seed=args.seed,
        pool_per_class=args.pool_per_class,
        eval_per_class=args.eval_per_class,
    )
    meta = pretrain_student(args.out, config, stop_after=args.stop_after)
    if meta is None:
        print(f"stopped at step {args.stop_after}; rerun the same command to continue")
        return 0
    print(f"wrote {args.out}")
    print(
        "pretraining classifier accuracy per style: "
        + ", ".join(f"{k} {v:.3f}" for k, v in meta["style_accuracy"].items())
    )
    return 0
