"""What a distilled classifier is, as plain data: its preprocessing, its classes and where it came from.

One :class:`ModelInfo` describes both kinds of model ``vl2v predict`` and ``vl2v evaluate`` accept: an
export (``vl2v export`` writes it as ``metadata.json`` beside ``model.onnx`` or ``model.pt``, so a server
needs nothing else to feed the model and name its outputs) and a finished run folder (read from the
run's own files, :func:`client_distill.deploy.run_model.load_run`). It imports neither torch nor numpy, so the
ONNX prediction path stays light.

The file is meant to grow (a model card's facts: queries paid, teacher, cost): keys this version does
not know are kept in :attr:`ModelInfo.extra` on reading and written back unchanged, and a reader
refuses only a different ``format``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from client_distill.errors import UsageError

#: the ``format`` of ``metadata.json``; a reader refuses any other
FORMAT = "vl2v-classifier/1"
#: the metadata file of an export
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input, exactly as the run evaluated its splits
    (:func:`client_distill.data.image_files.decode` then :func:`client_distill.train.augment.normalise`): RGB,
    the whole image resized to ``image_size`` × ``image_size`` (bilinear, no crop), pixels / 255, then
    ``(x − mean) / std`` per channel; float32, NCHW."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "bilinear, whole image, no crop"
    layout: str = "NCHW float32 RGB, (pixels / 255 - mean) / std"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        return cls(
            image_size=int(d["image_size"]),
            mean=tuple(float(m) for m in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(s) for s in d["std"]),  # type: ignore[arg-type]
            resize=str(d.get("resize", cls.resize)),
            layout=str(d.get("layout", cls.layout)),
        )


@dataclass
class ModelInfo:
    """The facts of one classifier (see the module docstring).

    ``head`` is ``"text"`` when the logits are ``logit_scale · cos(z, T_c)`` against the teacher's class
    text embeddings (ADiP and its ablations, SD) and ``"linear"`` for a trained linear classifier
    (ERM, LP, LP-FT, KD). ``run`` holds the run's identity and the accuracies it recorded for the model
    it outputs (``recorded``: ``{domain: {"in" | "out": accuracy}}``, DomainBed's splits of trial seed
    ``run["seed"]``), which ``vl2v evaluate`` reproduces. ``model_file``/``model_format`` are set for an
    export, ``check`` holds the export's agreement check."""

    classes: list[str]
    preprocessing: Preprocessing
    method: str
    head: str
    logit_scale: float | None
    student: str
    run: dict[str, Any]
    model_file: str | None = None
    model_format: str | None = None
    input_name: str = "images"
    output_name: str = "logits"
    check: dict[str, Any] | None = None
    software: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {"format": FORMAT, **d, **extra}

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/metadata.json`` (atomically: a reader never sees half a file)."""
        path = Path(folder) / METADATA_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        if d.get("format") != FORMAT:
            raise UsageError(f"unsupported model metadata format {d.get('format')!r}; expected {FORMAT}")
        known = {f.name for f in fields(cls)} - {"extra"}
        missing = {"classes", "preprocessing", "method", "head", "student", "run"} - set(d)
        if missing:
            raise UsageError(f"model metadata lacks {', '.join(sorted(missing))}")
        values = {k: v for k, v in d.items() if k in known}
        values["preprocessing"] = Preprocessing.from_dict(d["preprocessing"])
        values.setdefault("logit_scale", None)
        extra = {k: v for k, v in d.items() if k not in known and k != "format"}
        return cls(**values, extra=extra)

    @classmethod
    def read(cls, folder: str | Path) -> ModelInfo:
        """``folder/metadata.json``; a one-line user error if it is missing or not ours."""
        path = Path(folder) / METADATA_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"{folder} is not a vl2v export (no {METADATA_FILE})") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path} is not a vl2v export's metadata (not a JSON object)")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path}: malformed metadata ({type(exc).__name__}: {exc})") from None
