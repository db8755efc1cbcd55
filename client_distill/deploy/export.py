"""``vl2v export``: a finished run's output model (:mod:`client_distill.deploy.run_model`, folded into one
classifier) written as one standalone file.

:func:`export_run` writes the classifier as ONNX (``torch.onnx.export``, dynamo exporter, dynamic batch
axis; served by onnxruntime) or TorchScript (``torch.jit.trace``), with ``metadata.json``
(:class:`~client_distill.deploy.model_info.ModelInfo`: preprocessing, classes, provenance) beside it, and
checks the written file against PyTorch on :data:`CHECK_IMAGES` images before it counts as an export.

Every export also carries its model card (:mod:`client_distill.deploy.model_card`: ``MODEL_CARD.md`` and
``model_card`` in the metadata), with the cost measured on the written model (:mod:`client_distill.deploy.cost`).
With a :class:`~client_distill.deploy.open_vocab.Vocabulary` (``--classes``), the text head holds the bought
embeddings of those classes instead of the run's own (:func:`with_vocabulary`).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from client_distill.data.datasets import open_dataset
from client_distill.deploy import cost
from client_distill.deploy.model_card import CARD_FILE, build_card, render
from client_distill.deploy.model_info import METADATA_FILE, ModelInfo
from client_distill.deploy.open_vocab import Vocabulary
from client_distill.deploy.predict import ImageError, decode_image, open_model, preprocess
from client_distill.deploy.run_model import RunModel, StandaloneClassifier, load_run
from client_distill.errors import UsageError, Vl2vError
from client_distill.methods.base import TextHead

EXPORT_FORMATS = ("onnx", "torchscript")
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.pt"}
#: images the written model is checked on against PyTorch
CHECK_IMAGES = 32
#: largest absolute logit difference an export may show against PyTorch
CHECK_TOLERANCE = 1e-3
#: ONNX opset of the dynamo exporter's output
OPSET = 18


class ExportError(Vl2vError):
    """The written model does not reproduce the PyTorch classifier (or cannot be written)."""


# ------------------------------------------------------------------------------------------- export


def check_inputs(info: ModelInfo, n: int = CHECK_IMAGES) -> tuple[np.ndarray, str]:
    """``n`` preprocessed images for the export check, and what they are: images of the run's own data
    (spread over its domains and classes) where the folder is readable, else seeded random tensors."""
    size = info.preprocessing.image_size
    try:
        data = open_dataset(info.run["data"], info.run.get("dataset"))
        samples = [s for d in data.domains for s in data.samples(d)]
        picked = [samples[i] for i in np.linspace(0, len(samples) - 1, min(n, len(samples))).astype(int)]
        pictures = np.stack([decode_image(data.root / s.path, size) for s in picked])
        if len(pictures) == n:
            return preprocess(pictures, info.preprocessing), f"{n} images of {info.run['data']}"
    except (UsageError, ImageError):
        pass
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3, size, size)).astype(np.float32), f"{n} seeded random tensors"


def _export_onnx(classifier: nn.Module, example: torch.Tensor, file: Path) -> None:
    """The dynamo exporter (``torch.export`` → onnxscript), the batch axis dynamic."""
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about its own internals
        try:
            program = torch.onnx.export(
                classifier,
                (example,),
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes={"images": {0: batch}},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many kinds; all mean "no export"
            raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    program.save(str(file))


def _export_torchscript(classifier: nn.Module, example: torch.Tensor, file: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        traced = torch.jit.trace(classifier, example, check_trace=False)
        torch.jit.save(traced, str(file))


def agreement(expected: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    """How far an export's logits are from PyTorch's on the same inputs."""
    return {
        "max_abs_logit_diff": float(np.abs(expected - got).max()),
        "argmax_identical": bool((expected.argmax(1) == got.argmax(1)).all()),
        "tolerance": CHECK_TOLERANCE,
    }


def verify(folder: Path, x: np.ndarray, expected: np.ndarray, described: str) -> dict[str, Any]:
    """Load the export in ``folder`` as ``vl2v predict`` would and compare its logits on ``x`` with
    PyTorch's ``expected``; :class:`ExportError` unless they agree (see :data:`CHECK_TOLERANCE`)."""
    predictor = open_model(folder)
    check = agreement(expected, predictor.logits(x))
    if check["max_abs_logit_diff"] > CHECK_TOLERANCE or not check["argmax_identical"]:
        raise ExportError(
            f"the {predictor.source} model does not reproduce PyTorch on {described}: max |logit difference| "
            f"{check['max_abs_logit_diff']:.3g} (limit {CHECK_TOLERANCE}), argmax identical: "
            f"{check['argmax_identical']}; nothing written"
        )
    return check


def with_vocabulary(model: RunModel, vocabulary: Vocabulary) -> RunModel:
    """``model`` predicting ``vocabulary``'s classes: the same student and head, a text head of the
    bought embeddings at the run's logit scale. Only for text-head methods (checked before buying too,
    :func:`~client_distill.deploy.open_vocab.require_text_head`)."""
    old = model.classifier.text_head
    if old is None:
        raise UsageError(
            f"--classes needs a method that predicts with the teacher's text embeddings; "
            f"{model.info.method} has a linear head"
        )
    texts = torch.from_numpy(vocabulary.embeddings)
    if texts.shape[1] != old.weight.shape[1]:
        raise UsageError(
            f"the bought text embeddings have {texts.shape[1]} dimensions, the student's head {old.weight.shape[1]}"
        )
    head = TextHead(texts, scale=old.scale)
    classifier = StandaloneClassifier(model.classifier.backbone, model.classifier.head, head).eval()
    info = model.info
    info.extra["open_vocabulary"] = {**vocabulary.facts, "trained_classes": info.classes, "prompts": vocabulary.prompts}
    info.classes = list(vocabulary.classes)
    return RunModel(classifier, info, model.batch_size)


def measure_cost(
    model: RunModel,
    model_file: Path,
    fmt: str,
    texts_for_vendor: int,
    training_queries: int,
    price: float | None,
    cpu_price_per_core_hour: float = cost.DEFAULT_CPU_PRICE_PER_CORE_HOUR,
) -> dict[str, Any]:
    """Size, one-thread CPU speed (PyTorch always; onnxruntime on an ONNX export) and the break-even
    against the vendor's zero-shot classifier (:func:`client_distill.deploy.cost.break_even`)."""
    size = model.info.preprocessing.image_size
    speeds = [cost.measure_pytorch(model.classifier, size)]
    if fmt == "onnx":
        speeds.append(cost.measure_onnx(model_file, size))
    per_core = max(s.throughput_batch64 for s in speeds)
    return {
        "student_params": cost.parameter_count(model.classifier),
        "image_size": size,
        "speeds": cost.speeds_dict(speeds),
        "break_even": cost.break_even(training_queries, texts_for_vendor, price, per_core, cpu_price_per_core_hour),
    }


def export_run(
    run: str | Path,
    out: str | Path,
    fmt: str = "onnx",
    vocabulary: Vocabulary | None = None,
    cpu_price_per_core_hour: float = cost.DEFAULT_CPU_PRICE_PER_CORE_HOUR,
) -> ModelInfo:
    """Write the run's output model to ``out`` as ``model.onnx`` or ``model.pt`` plus ``metadata.json``
    and ``MODEL_CARD.md`` (for ``vocabulary``'s classes where one is given).

    The model is written and checked in a temporary folder beside ``out`` and moved in only once
    onnxruntime (or ``torch.jit.load``) reproduces PyTorch's logits on :data:`CHECK_IMAGES` images to
    :data:`CHECK_TOLERANCE` with identical argmax: a failed export leaves no model behind."""
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    model = load_run(run)
    if vocabulary is not None:
        model = with_vocabulary(model, vocabulary)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.resolve() == Path(run).resolve():
        raise UsageError("--out must not be the run folder itself (an export folder is a model of its own)")
    out.parent.mkdir(parents=True, exist_ok=True)
    x, described = check_inputs(model.info)
    with torch.inference_mode():
        expected = model.classifier(torch.from_numpy(x)).float().numpy()
    name = MODEL_FILES[fmt]
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp)
        example = torch.from_numpy(x[:2]).clone()
        if fmt == "onnx":
            _export_onnx(model.classifier, example, staging / name)
        else:
            _export_torchscript(model.classifier, example, staging / name)
        info = model.info
        info.model_file, info.model_format = name, fmt
        info.software = _software(fmt)
        info.write(staging)
        check = verify(staging, x, expected, described)
        info.check = {"inputs": described, **check}
        info.extra["model_card"] = _card(run, model, staging / name, fmt, vocabulary, cpu_price_per_core_hour)
        info.write(staging)
        (staging / CARD_FILE).write_text(render(info.extra["model_card"], info))
        out.mkdir(exist_ok=True)
        for stale in set(MODEL_FILES.values()) - {name}:  # a previous export of the other format
            (out / stale).unlink(missing_ok=True)
        for file in (name, METADATA_FILE, CARD_FILE):
            shutil.move(str(staging / file), out / file)
    return info


def _card(
    run: str | Path, model: RunModel, file: Path, fmt: str, vocabulary: Vocabulary | None, cpu_price: float
) -> dict[str, Any]:
    """The model card's facts (:func:`client_distill.deploy.model_card.build_card`) with the measured cost. The
    student's queries are what the run paid (prompts and image queries) plus an open-vocabulary export's
    prompts; the vendor's zero-shot alternative needs the exported classes' prompts."""
    ov = model.info.extra.get("open_vocabulary")
    card = build_card(run, model.info, {}, ov)
    q = card["queries"]
    texts = ov["queries"]["texts"] if ov else q["class_texts"]
    training = q["class_texts"] + q["image_queries"] + (texts if ov else 0)
    price = card["teacher"]["price_per_query"]
    if price is None and vocabulary is not None:
        price = vocabulary.facts.get("price_per_query")
    card["cost"] = measure_cost(model, file, fmt, texts, training, price, cpu_price)
    return card


def _software(fmt: str) -> dict[str, str]:
    versions = {"torch": torch.__version__}
    if fmt == "onnx":
        import onnxruntime

        versions.update({"onnx_opset": str(OPSET), "onnxruntime": onnxruntime.__version__})
    return versions
