"""``vl2v-vendor pretrain``: train the vendor's embedded default model, ``vl2v-tiny``, on the synthetic
world's captioned corpus (all classes × all styles) and save an open_clip-loadable checkpoint."""

from __future__ import annotations

import argparse
import time
from dataclasses import fields
from pathlib import Path

from shared.world import STYLE_NAMES, TASKS
from vendor_server.errors import VendorCliError
from vendor_server.pretrain_config import PretrainConfig
from vendor_server.settings import DEFAULT_WEIGHTS


def register(subparsers: argparse._SubParsersAction) -> None:
    d = PretrainConfig()
    p = subparsers.add_parser("pretrain", help="pretrain vl2v-tiny on the synthetic world (resumable)")
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="checkpoint path (default: the served default, vendor_server/weights/vl2v-tiny-synth.pt)",
    )
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimisation steps (default: {d.steps})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the corpus and of training")
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help=f"image-caption pairs per step (default: {d.batch_size})"
    )
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default: {d.lr})")
    p.add_argument(
        "--per-cell", type=int, default=d.per_cell, help=f"corpus images per class and style (default: {d.per_cell})"
    )
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between resumable states")
    p.add_argument("--workers", type=int, default=d.workers, help="rendering processes")
    p.add_argument(
        "--init",
        type=str,
        default=None,
        metavar="CHECKPOINT",
        help="continue pretraining from this vl2v-tiny checkpoint",
    )
    p.add_argument("--warmup", type=int, default=d.warmup, help=f"warm-up steps (default: {d.warmup})")
    p.add_argument(
        "--ce-weight",
        type=float,
        default=d.ce_weight,
        help=f"weight of the class-prompt cross-entropy beside the caption loss (default: {d.ce_weight})",
    )
    p.add_argument(
        "--ce-styles",
        default=d.ce_styles,
        metavar="STYLE,STYLE",
        help="styles whose images the class-prompt cross-entropy and the prototypes train on (default: every "
        "style); the caption loss covers every style whatever this says",
    )
    p.add_argument(
        "--cell-coverage",
        type=float,
        default=d.cell_coverage,
        help="share of the (class, style) cells beyond photo that the corpus holds, as a web corpus has photos of "
        f"everything but sketches of only some things (default: {d.cell_coverage})",
    )
    p.add_argument(
        "--context-said",
        type=float,
        default=d.context_said,
        metavar="P",
        help="how often a caption names the object's colour and its habitat where the style shows them "
        "(default: 0.6 and 0.3)",
    )
    p.add_argument(
        "--aux-weight",
        type=float,
        default=d.aux_weight,
        help=f"weight of the temporary image class prototypes (default: {d.aux_weight})",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 is faster on a busy machine)"
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="STEP",
        help="stop at STEP keeping the resumable state (train in slices)",
    )
    p.add_argument(
        "--no-eval", dest="eval", action="store_false", help="skip the per-domain zero-shot check at the end"
    )
    p.set_defaults(func=_pretrain)


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    from vendor_server.pretrain import pretrain, zero_shot

    if args.threads:
        torch.set_num_threads(args.threads)

    names = {f.name for f in fields(PretrainConfig)}
    cfg = PretrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    if (
        cfg.steps < 1
        or cfg.batch_size < 2
        or cfg.per_cell < 1
        or min(cfg.ce_weight, cfg.aux_weight) < 0
        or not 0 < cfg.cell_coverage <= 1
        or not 0 <= (cfg.context_said if cfg.context_said is not None else 0) <= 1
    ):
        raise VendorCliError(
            "--steps and --per-cell must be ≥ 1, --batch-size ≥ 2, --ce-weight and --aux-weight ≥ 0, "
            "--cell-coverage in (0, 1], --context-said in [0, 1]"
        )
    unknown = [s for s in (cfg.ce_styles or "").split(",") if s and s not in STYLE_NAMES]
    if unknown:
        raise VendorCliError(f"--ce-styles: unknown style(s) {', '.join(unknown)}; styles: {', '.join(STYLE_NAMES)}")
    if args.init and not Path(args.init).is_file():
        raise VendorCliError(f"--init {args.init}: no such checkpoint")
    if args.out.is_dir():
        raise VendorCliError(f"--out {args.out} is a folder; give a file path")
    t0 = time.time()
    try:
        summary = pretrain(args.out, cfg, stop_after=args.stop_after)
    except ValueError as exc:
        raise VendorCliError(str(exc)) from None
    if summary["paused"]:
        print(
            f"paused at step {args.stop_after} after {time.time() - t0:.0f} s; rerun without --stop-after to continue"
        )
        return 0
    print(
        f"saved {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB) after {time.time() - t0:.0f} s "
        f"({summary['steps']} steps this run, {summary['steps_per_s']} steps/s)"
    )
    if args.eval:
        for task in TASKS:
            acc = zero_shot(args.out, task=task)
            print(
                f"zero-shot 'a photo of a {{class}}' on held-out {task}: "
                + ", ".join(f"{d} {a:.3f}" for d, a in acc.items())
            )
    return 0
