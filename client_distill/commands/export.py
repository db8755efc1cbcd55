"""``vl2v export``: a finished run's output model as one standalone classifier (ONNX or TorchScript) with
its preprocessing and class names in ``metadata.json``, checked against PyTorch before it is written."""

from __future__ import annotations

import argparse

from client_distill.settings import ClientSettings

FORMATS = ("onnx", "torchscript")  # client_distill.export.EXPORT_FORMATS, spelled out: no torch at --help


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
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from client_distill.export import export_run  # torch: not for `vl2v --help`

    info = export_run(args.run, args.out, args.format)
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
    return 0
