"""``vl2v predict``: class names and probabilities of images, from an export or a finished run folder.

Exit status: 0 when at least one image was classified (inputs that were not are listed on stderr, and
under ``failures`` with ``--json``); 2 with a one-line error when nothing could be (a bad model, or
every input bad)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from client_distill.buy.settings import ClientSettings
from client_distill.errors import UsageError

if TYPE_CHECKING:
    from client_distill.deploy.predict import Failure, Prediction


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "predict",
        help="class probabilities of images, from an export (onnxruntime, no torch) or a run folder",
        description=(
            "Classifies image files and every file under the folders given. Files that cannot be read as images "
            "are listed and the rest classified; the exit status is non-zero only when nothing was classified."
        ),
    )
    p.add_argument("model", help="an export folder (vl2v export --out) or a finished run folder")
    p.add_argument("inputs", nargs="+", metavar="IMAGE|DIR", help="image files and folders (searched recursively)")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from client_distill.deploy.predict import classify_files, collect_inputs, open_model  # torch-free for ONNX

    if args.top_k < 1:
        raise UsageError("--top-k must be at least 1")
    predictor = open_model(args.model)
    files, failures = collect_inputs(args.inputs)
    predictions, bad = classify_files(predictor, files, args.top_k)
    failures += bad
    try:
        _print(args, predictor.source, predictions, failures)
    except BrokenPipeError:  # `vl2v predict ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
    if not predictions:
        if len(failures) == 1:
            raise UsageError(f"{failures[0].path}: {failures[0].error}")
        for f in failures:
            print(f"vl2v: not classified: {f.path}: {f.error}", file=sys.stderr)
        raise UsageError(f"nothing classified: all {len(failures)} inputs failed (listed above)")
    for f in failures:
        print(f"vl2v: not classified: {f.path}: {f.error}", file=sys.stderr)
    if failures:
        print(f"vl2v: classified {len(predictions)} image(s); {len(failures)} input(s) failed", file=sys.stderr)
    return 0


def _print(args: argparse.Namespace, source: str, predictions: list[Prediction], failures: list[Failure]) -> None:
    """The predictions on stdout (lines, or one JSON document with the failures), flushed here so that
    a closed pipe is seen by the caller, not at interpreter exit."""
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "source": source,
                    "predictions": [
                        {"path": p.path, "top": [{"class": c, "probability": pr} for c, pr in p.top]}
                        for p in predictions
                    ],
                    "failures": [{"path": f.path, "error": f.error} for f in failures],
                }
            )
        )
    else:
        for p in predictions:
            print(f"{p.path}\t" + "  ".join(f"{c} {pr:.3f}" for c, pr in p.top))
    sys.stdout.flush()
