"""``vl2v export``: a finished run's output model as one standalone classifier (ONNX or TorchScript) with
its preprocessing and class names in ``metadata.json`` and its model card in ``MODEL_CARD.md``, checked
against PyTorch before it is written; ``--classes`` exports a text-head student for other classes, their
prompts bought from the vendor through the client's budgeted cache (:mod:`client_distill.deploy.open_vocab`)."""

from __future__ import annotations

import argparse

from client_distill.buy.settings import ClientSettings
from client_distill.commands.common import add_vendor_arguments, vendor_config
from client_distill.errors import UsageError

FORMATS = ("onnx", "torchscript")  # client_distill.deploy.export.EXPORT_FORMATS, spelled out: no torch at --help


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser(
        "export",
        help="a finished run's model as one classifier file (ONNX or TorchScript) plus metadata.json",
        description=(
            "Folds the model the run outputs (SWAD's average, else the best checkpoint) into one module, "
            "image tensor -> class logits (student, head and, for ADiP, the teacher's class text embeddings "
            "at its logit scale), writes it with metadata.json (image size, mean, std, classes, method, run), "
            "and refuses the export unless the written file reproduces PyTorch on 32 images "
            "(max |logit difference| <= 1e-3, identical argmax)."
        ),
    )
    p.add_argument("run", help="a finished run folder (vl2v distill --out, or one under a sweep's runs/)")
    p.add_argument("--out", required=True, help="folder for model.onnx / model.pt and metadata.json")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default, onnxruntime) or torchscript")
    p.add_argument(
        "--classes",
        default=None,
        help="comma-separated class names to export the student for instead of its own (ADiP and its variants, "
        "SD): their prompts are bought from the run's teacher (the vendor flags below), cached",
    )
    p.add_argument(
        "--templates", default=None, help="with --classes: file of prompt templates with {} (default 'a photo of a {}')"
    )
    p.add_argument(
        "--cpu-price",
        type=float,
        default=0.0,
        help="price of one CPU core-hour, in the vendor's currency, for the model card's break-even (default 0: "
        "the student's compute taken as free)",
    )
    add_vendor_arguments(p, settings)
    p.add_argument(
        "--cache", default=settings.cache, help="embedding cache dir (default $VL2V_CACHE or ~/.cache/vl2v/embeddings)"
    )
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from client_distill.deploy.export import export_run  # torch: not for `vl2v --help`
    from client_distill.deploy.model_card import break_even_text
    from client_distill.deploy.open_vocab import buy_vocabulary, parse_classes

    if args.templates and not args.classes:
        raise UsageError("--templates only applies with --classes")
    vocabulary = (
        buy_vocabulary(args.run, parse_classes(args.classes), args.templates, vendor_config(args))
        if args.classes
        else None
    )
    info = export_run(args.run, args.out, args.format, vocabulary, args.cpu_price)
    check = info.check or {}
    print(
        f"wrote {args.out}/{info.model_file} and {args.out}/metadata.json: {info.method} "
        f"({info.run['selected_model']} model of run {info.run['id']}), {len(info.classes)} classes, "
        f"{info.preprocessing.image_size} px input"
    )
    print(
        f"checked on {check.get('inputs')}: max |logit difference| {check.get('max_abs_logit_diff'):.2g} "
        f"(limit {check.get('tolerance')}), argmax identical"
    )
    if vocabulary is not None:
        q = vocabulary.facts["queries"]
        print(
            f"open vocabulary: {len(vocabulary.classes)} classes, {q['texts']} prompts: paid {q['paid']}, "
            f"from the cache {q['cache_hits']}"
        )
    b = info.extra["model_card"]["cost"]["break_even"]
    after = break_even_text(b) if b.get("predictions") is None else f"after {b['predictions']:,} predictions"
    print(f"model card: {args.out}/MODEL_CARD.md; cheaper than the vendor {after} ({b['assumption']})")
    return 0
