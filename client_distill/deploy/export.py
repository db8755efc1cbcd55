"""A finished run's output model as one standalone classifier: image tensor → class logits.

A run folder keeps what training needs (the method's state dict, the RunSpec, the records), not what a
deployment needs. :func:`load_run` rebuilds the model the run outputs (:func:`model_selection.select`:
SWAD's average where the run used SWAD, else the final stage's best checkpoint) and folds it into a
:class:`StandaloneClassifier`: the student backbone, then the method's head, then, for the methods that
predict with the teacher's class text embeddings (ADiP, its ablations, SD), the zero-shot text head
``logit_scale · cos(z, T_c)`` with those embeddings and the teacher's scale stored inside the model. The
classifier runs the same operations as the method's own ``logits``, so it scores what the run recorded.

SWAD's average is not a file of the run folder: the trainer computes it at the end from the window
search it saves in ``checkpoint.pt`` after every checkpoint. :func:`selected_weights` recomputes it from
there (the same deterministic sum) and refuses the result unless its window is the one the run recorded.

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

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from client_distill.data.datasets import open_dataset
from client_distill.deploy import cost
from client_distill.deploy.model_card import CARD_FILE, build_card, render
from client_distill.deploy.model_info import METADATA_FILE, ModelInfo, Preprocessing
from client_distill.deploy.open_vocab import Vocabulary
from client_distill.deploy.predict import DEFAULT_BATCH, ImageError, decode_image, open_model, preprocess
from client_distill.errors import UsageError, Vl2vError
from client_distill.methods.base import Method, TextHead
from client_distill.methods.registry import create_method, method_class
from client_distill.train.run_folder import CHECKPOINT, RunFolder
from client_distill.train.runspec import RunSpec
from client_distill.train.students import create_student
from client_distill.train.swad import LossValley

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


class StandaloneClassifier(nn.Module):
    """``images [B, 3, S, S]`` (preprocessed, see :class:`~client_distill.deploy.model_info.Preprocessing`) →
    ``logits [B, C]``: ``text_head(head(backbone(x)))`` for text-head methods, ``head(backbone(x))`` for
    a linear classifier. The same modules as the method's, so the same numbers."""

    def __init__(self, backbone: nn.Module, head: nn.Module, text_head: TextHead | None):
        super().__init__()
        self.backbone, self.head, self.text_head = backbone, head, text_head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.head(self.backbone(images))
        return out if self.text_head is None else self.text_head(out)


@dataclass
class RunModel:
    """A run's output model folded into a classifier, and its facts."""

    classifier: StandaloneClassifier
    info: ModelInfo
    batch_size: int


def fold(method: Method) -> StandaloneClassifier:
    """The prediction path of ``method`` as one module, as its class declares it (``export_head``, see
    :class:`~client_distill.methods.base.Method`; :class:`StandaloneClassifier`)."""
    if method.export_head is None:
        raise UsageError(
            f"method {method.name!r} predicts from the teacher's image embeddings: it has no student to export"
        )
    text_head = method.text_head if method.export_head == "text" else None
    return StandaloneClassifier(method.student.body, method.head, text_head).eval()


def selected_weights(folder: RunFolder, record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The method state dict of the model the run outputs (``record`` is :func:`select`'s)."""
    if record["model"] == "best":
        return folder.load(f"best_{record['stage']}.pt")
    if record["model"] != "swad":
        raise UsageError(f"{folder.path}: the run outputs the teacher itself ({record['model']}); nothing to export")
    file = folder.path / CHECKPOINT
    if not file.is_file():
        raise UsageError(f"{folder.path}: SWAD's average needs {CHECKPOINT}, which is missing")
    state = torch.load(file, map_location="cpu", weights_only=True)
    hp = record["hparams"]
    valley = LossValley(int(hp["swad_n_converge"]), int(hp["swad_n_tolerance"]), float(hp["swad_tolerance_ratio"]))
    if state.get("swad") is None:
        raise UsageError(f"{folder.path}/{CHECKPOINT} holds no SWAD state")
    valley.load_state_dict(state["swad"])
    weights = valley.final_weights()
    if valley.summary() != record["swad"]:
        raise UsageError(
            f"{folder.path}: SWAD's window rebuilt from {CHECKPOINT} ({valley.summary()}) is not the one the run "
            f"recorded ({record['swad']}); the folder was changed after the run finished"
        )
    return weights


def _classes(spec: RunSpec, n: int) -> list[str]:
    """The run's class names in label order: its dataset's (what the labels were), else its teacher set's
    (the run checked they are the same)."""
    try:
        classes = open_dataset(spec.data, spec.dataset).classes
    except UsageError:
        manifest = Path(spec.teacher or "") / "manifest.json"
        if not spec.teacher or not manifest.is_file():
            raise UsageError(
                f"the run's class names come from its data folder {spec.data} (or its teacher set), and neither "
                "is readable from here; run from the folder the run was made in"
            ) from None
        classes = list(json.loads(manifest.read_text())["classes"])
    if len(classes) != n:
        raise UsageError(f"the run's model has {n} classes but its data folder {spec.data} now has {len(classes)}")
    return classes


def load_run(path: str | Path) -> RunModel:
    """The model a finished run outputs, folded (see the module docstring), with its :class:`ModelInfo`."""
    folder = RunFolder(path)
    spec = folder.finished().spec()
    record = folder.output_record()
    weights = selected_weights(folder, record)
    text = weights.get("text_head.weight")
    linear = method_class(spec.method, has_text=text is not None).export_head == "linear"
    if not linear and text is None:
        raise UsageError(f"{folder.path}: method {spec.method!r} has neither a linear head nor text embeddings")
    n = int(weights["head.weight"].shape[0] if linear else text.shape[0])  # the rows that are the classes
    classes = _classes(spec, n)
    with torch.random.fork_rng(devices=[]):  # building a module draws initial weights: keep the caller's RNG
        student = create_student(spec.student, pretrained=False)
        method = create_method(
            spec.method,
            student=student,
            text_embeddings=text,
            num_classes=len(classes),
            hparams=record["hparams"],
            logit_scale=float(record["logit_scale"]),
        )
    try:
        method.load_state_dict(weights)
    except RuntimeError as exc:  # the student named in args.json is not the one the run trained
        raise UsageError(
            f"{folder.path}: the saved weights do not fit student {spec.student!r}: {str(exc).splitlines()[0]}"
        ) from None
    method.eval()
    classifier = fold(method)
    uses_text = classifier.text_head is not None
    recorded: dict[str, dict[str, float]] = {}
    for i, domain in enumerate(record["domains"]):
        for split in ("in", "out"):
            if f"env{i}_{split}_acc" in record:
                recorded.setdefault(domain, {})[split] = float(record[f"env{i}_{split}_acc"])
    info = ModelInfo(
        classes=classes,
        preprocessing=Preprocessing(student.input_size, student.mean, student.std),  # type: ignore[arg-type]
        method=spec.method,
        head="text" if uses_text else "linear",
        logit_scale=float(record["logit_scale"]) if uses_text else None,
        student=spec.student,
        run={
            "id": folder.path.resolve().name,
            "path": str(folder.path.resolve()),
            "selected_model": record["model"],
            "stage": record["stage"],
            "seed": spec.seed,
            "test_domain": spec.test_domain,
            "dataset": spec.dataset,  # the name the run was given (None: the folder itself)
            "data": spec.data,
            "teacher": spec.teacher,
            "domains": list(record["domains"]),
            "recorded": recorded,
        },
    )
    return RunModel(classifier, info, int(record["hparams"].get("test_batch", DEFAULT_BATCH)))


class RunPredictor:
    """A run folder as a :class:`~client_distill.deploy.predict.Predictor` (PyTorch, CPU, channels-last and the
    evaluation batch size as the run's evaluator used them)."""

    source = "run"

    def __init__(self, path: str | Path):
        model = load_run(path)
        self.info, self.batch_size = model.info, model.batch_size
        self.classifier = model.classifier.to(memory_format=torch.channels_last)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return self.classifier(x).float().numpy()


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
