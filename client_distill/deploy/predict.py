"""Class probabilities from a distilled classifier: an export (``vl2v export``) or a finished run folder.

An ONNX export is served by onnxruntime alone: this module imports neither torch nor anything of this
package that does (a test runs ``vl2v predict`` on an export and checks that ``torch`` never entered
``sys.modules``), so a deployment needs numpy, Pillow and onnxruntime, not a 1 GB training stack.
A TorchScript export and a run folder load torch when they are opened, and only then.

Every model is a :class:`Predictor`: its :class:`~client_distill.deploy.model_info.ModelInfo` (classes,
preprocessing) and ``logits(batch)``. Images are decoded and normalised here exactly as the run
evaluated its splits (:func:`decode_image` is :func:`client_distill.data.image_store.decode` without torch),
so ``vl2v evaluate`` on a run's split reproduces the accuracy the run recorded.

Bad inputs are per file: :func:`classify_files` classifies what decodes and returns the rest as
:class:`Failure` (path and a one-line reason); the caller decides what a failure means.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from client_distill.data.image_files import decode
from client_distill.deploy.model_info import METADATA_FILE, ModelInfo, Preprocessing
from client_distill.errors import UsageError
from client_distill.train.run_reader import ARGS_FILE, RunReader

#: images per forward pass of an export (a run folder uses the batch it evaluated with)
DEFAULT_BATCH = 64
#: what Pillow raises on a file that is not an image, is cut short, or is too large to decode safely
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageError(UsageError):
    """One input image cannot be read (missing, not an image, truncated)."""


# ------------------------------------------------------------------------------------- images


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """One image file as ``[size, size, 3]`` uint8 RGB (:func:`client_distill.data.image_files.decode`, what
    the trainer's evaluator sees). A file that is not an image or whose data ends early raises
    :class:`ImageError`: Pillow's default refuses a truncated file rather than padding it with black."""
    try:
        return decode(path, size)
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except Image.UnidentifiedImageError:
        raise ImageError("not an image (Pillow cannot identify it)") from None
    except DECODE_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"cannot decode ({reason})") from None


def preprocess(pictures: np.ndarray, p: Preprocessing) -> np.ndarray:
    """``[N, S, S, 3]`` uint8 → the model's ``[N, 3, S, S]`` float32 input, with the same float32
    operations as the trainer (``x / 255``, then ``(x − mean) / std``), so the inputs are bit-identical."""
    x = pictures.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255)
    mean = np.asarray(p.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(p.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (probabilities that sum to 1 to print precision)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ------------------------------------------------------------------------------------- models


class Predictor(Protocol):
    """A classifier: what it is (:attr:`info`), and logits ``[N, C]`` for a preprocessed batch."""

    info: ModelInfo
    source: str  # "onnx", "torchscript" or "run"
    batch_size: int

    def logits(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxPredictor:
    """An ONNX export under onnxruntime (CPU). Threads: ``OMP_NUM_THREADS`` where set, else
    onnxruntime's default (every core)."""

    source = "onnx"

    def __init__(self, folder: Path, info: ModelInfo):
        import onnxruntime as ort  # only this model kind needs it

        self.info, self.batch_size = info, DEFAULT_BATCH
        options = ort.SessionOptions()
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit():
            options.intra_op_num_threads = int(threads)
        file = folder / (info.model_file or "model.onnx")
        try:
            self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise UsageError(f"onnxruntime cannot load {file}: {str(exc).splitlines()[0]}") from None

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([self.info.output_name], {self.info.input_name: batch})[0])


class TorchScriptPredictor:
    """A TorchScript export (``model.pt``); imports torch."""

    source = "torchscript"

    def __init__(self, folder: Path, info: ModelInfo):
        import torch

        self.info, self.batch_size, self._torch = info, DEFAULT_BATCH, torch
        file = folder / (info.model_file or "model.pt")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
                self.module = torch.jit.load(str(file), map_location="cpu").eval()
        except (OSError, RuntimeError, ValueError) as exc:
            raise UsageError(f"cannot load TorchScript model {file}: {str(exc).splitlines()[0]}") from None

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.module(self._torch.from_numpy(batch)).float().numpy()


def open_model(path: str | Path) -> Predictor:
    """The model at ``path``: an export folder (or its ``metadata.json``/model file) or a finished run
    folder; anything else is a one-line :class:`UsageError`."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"model {path} does not exist (give an export folder or a finished run folder)")
    folder = path.parent if path.is_file() else path
    if (folder / METADATA_FILE).is_file():
        info = ModelInfo.read(folder)
        if info.model_format == "onnx":
            return OnnxPredictor(folder, info)
        if info.model_format == "torchscript":
            return TorchScriptPredictor(folder, info)
        raise UsageError(f"{folder}: unknown model format {info.model_format!r} in {METADATA_FILE}")
    if RunReader(folder).is_run:
        from client_distill.deploy.run_model import RunPredictor  # torch: a run folder is a PyTorch model

        return RunPredictor(folder)
    raise UsageError(f"{path} is neither a vl2v export (no {METADATA_FILE}) nor a run folder (no {ARGS_FILE})")


# ------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Failure:
    """An input that was not classified, and why (one line)."""

    path: str
    error: str


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one image, most probable first: ``[(class name, probability), ...]``."""

    path: str
    top: list[tuple[str, float]]


def collect_inputs(items: Iterable[str | Path]) -> tuple[list[Path], list[Failure]]:
    """The files to classify: each file named as it is, and every file under each folder (recursively,
    sorted, hidden names skipped) whatever its name, so a stray non-image in a folder is reported as a
    failure rather than silently ignored. A name that does not exist is a failure."""
    files: list[Path] = []
    failures: list[Failure] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                failures.append(Failure(str(path), "folder holds no files"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            failures.append(Failure(str(path), "no such file or folder"))
    return files, failures


def classify_files(
    predictor: Predictor, files: Sequence[Path], top_k: int = 5
) -> tuple[list[Prediction], list[Failure]]:
    """The ``top_k`` classes of every file that decodes, in the given order, and the files that did not."""
    info, k = predictor.info, max(1, min(top_k, len(predictor.info.classes)))
    predictions: list[Prediction] = []
    failures: list[Failure] = []
    for start in range(0, len(files), predictor.batch_size):
        good: list[Path] = []
        pictures = []
        for file in files[start : start + predictor.batch_size]:
            try:
                pictures.append(decode_image(file, info.preprocessing.image_size))
                good.append(file)
            except ImageError as exc:
                failures.append(Failure(str(file), str(exc)))
        if not good:
            continue
        probs = softmax(predictor.logits(preprocess(np.stack(pictures), info.preprocessing)))
        for file, row in zip(good, probs, strict=True):
            order = np.argsort(-row, kind="stable")[:k]
            predictions.append(Prediction(str(file), [(info.classes[i], float(row[i])) for i in order]))
    return predictions, failures
