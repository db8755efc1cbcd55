"""A finished run's output model, folded into one standalone classifier: image tensor → class logits.

A run folder keeps what training needs (the method's state dict, the RunSpec, the records), not what a
deployment needs. :func:`load_run` rebuilds the model the run outputs
(:func:`~client_distill.train.model_selection.select`: SWAD's average where the run used SWAD, else the
final stage's best checkpoint) and folds it into a :class:`StandaloneClassifier` as the method's class
declares (its ``export_head``): the student backbone, then the method's head, then, for the methods that
predict with the teacher's class text embeddings (ADiP, its ablations, SD), the zero-shot text head
``logit_scale · cos(z, T_c)`` with those embeddings and the teacher's scale stored inside the model. The
classifier runs the same operations as the method's own ``logits``, so it scores what the run recorded.

SWAD's average is the run folder's ``swad.pt``. Folders finished before runs wrote it hold the window
search in ``checkpoint.pt`` instead: :func:`selected_weights` recomputes the average from there (the same
deterministic sum) and refuses the result unless its window is the one the run recorded.

:class:`RunPredictor` is a run folder as a :class:`~client_distill.deploy.predict.Predictor`
(``vl2v predict``/``evaluate`` on a run folder); :mod:`client_distill.deploy.export` writes the
classifier as a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from client_distill.data.datasets import open_dataset
from client_distill.deploy.model_info import ModelInfo, Preprocessing
from client_distill.errors import UsageError
from client_distill.methods.base import Method, TextHead
from client_distill.methods.registry import create_method, method_class
from client_distill.train.run_folder import CHECKPOINT, SWAD_WEIGHTS, RunFolder
from client_distill.train.runspec import RunSpec
from client_distill.train.students import create_student
from client_distill.train.swad import LossValley


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
    if (folder.path / SWAD_WEIGHTS).is_file():
        return folder.load(SWAD_WEIGHTS)
    file = folder.path / CHECKPOINT
    if not file.is_file():
        raise UsageError(f"{folder.path}: SWAD's average needs {SWAD_WEIGHTS} or {CHECKPOINT}; both are missing")
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
    return RunModel(classifier, info, int(record["hparams"]["test_batch"]))


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
