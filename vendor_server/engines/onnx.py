"""The ONNX Runtime engine: the same CLIP, its two towers exported to ONNX once per weights revision
and run by onnxruntime.

The export (``torch.onnx.export``'s dynamo exporter, batch axis dynamic, L2 normalisation inside the
graph) is cached in a folder named by the model and its revision (:func:`cache_folder`), with a
manifest of what made it (revision, torch, opset) and each file's SHA-256. At start-up a cached export
is used only if the manifest matches and the files hash to it and load and reproduce the torch model on
a fixed check batch; anything else (another revision, a torn or corrupt file) is exported again, so a
cache is never trusted for more than it can show. Several processes starting at once (``--workers``)
take a file lock: one exports, the others find its result.

Export costs tens of seconds for a ViT-B-32 on two cores (the closing figure is in docs/benchmarks.md);
a restart on the same weights pays only the hashing and the check."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vendor_server.encoder import Encoder
from vendor_server.errors import VendorCliError

log = logging.getLogger("vl2v.vendor")

#: ONNX opset of the export (the dynamo exporter's)
OPSET = 18
#: the least cosine similarity between an ONNX row and the torch row of the same input
MIN_COSINE = 0.9999
TOWERS = ("image", "text")
MANIFEST = "manifest.json"
#: images and texts of the start-up check against the torch model
CHECK_ITEMS = 4

#: one exported tower loaded by a runtime: a float32 pixel batch or int64 token batch in, normalised rows out
Runner = Callable[[np.ndarray], np.ndarray]


class OnnxEncoder(Encoder):
    """:class:`~vendor_server.encoder.Encoder` with the forward passes in onnxruntime sessions. The torch
    model stays loaded: it is what the export is made from and checked against, and what the revision
    names."""

    engine = "onnx"
    autocast_bf16 = False  # the export is float32: it is checked against float32 torch

    def __init__(self, name: str, pretrained: str, seed: int = 0, device: str = "cpu", cache_dir: Path | None = None):
        self._cache_dir, self._weights = cache_dir, pretrained
        super().__init__(name, pretrained, seed, device)

    def _start(self) -> None:
        self._open_runtime()
        folder = cache_folder(self._cache_dir, self.name, self.revision, self._weights)
        start = time.perf_counter()
        with _locked(folder):
            runners = self._cached_runners(folder)
            if runners is None:
                self.export(folder)
                runners = self._cached_runners(folder)
                if runners is None:
                    raise VendorCliError(
                        f"the {self.engine} engine's export of {self.name} does not reproduce the torch model "
                        f"(cosine < {MIN_COSINE}); serve it with --engine torch"
                    )
        self._image, self._text = runners
        self.start_up_s = time.perf_counter() - start
        log.info("%s engine: %s (%s) ready in %.1f s", self.engine, folder, self.runtime, self.start_up_s)

    def _open_runtime(self) -> None:
        """Check, before any export, that the runtime can run on this device: onnxruntime's providers."""
        import onnxruntime as ort

        self.providers = _providers(ort, self.device.type)

    @property
    def runtime(self) -> str:
        """What runs the export, for the log: onnxruntime's execution providers."""
        return ", ".join(self.providers)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self._image(pixels)

    def encode_tokens(self, tokens: torch.Tensor) -> np.ndarray:
        return self._text(tokens.numpy())

    # ---------------------------------------------------------------------------------- the cache

    def export(self, folder: Path) -> None:
        """Write both towers and the manifest into ``folder``, each file atomically."""
        start = time.perf_counter()
        folder.mkdir(parents=True, exist_ok=True)
        cpu = self.model.to("cpu")
        examples = {"image": self._check_pixels(), "text": self.tokenizer(["a photo", "a dog"])}
        digests = {}
        for tower in TOWERS:
            digests[f"{tower}.onnx"] = _export_tower(_Tower(cpu, tower), examples[tower], tower, folder)
        self.model.to(self.device)
        _write_atomically(folder / MANIFEST, json.dumps({**self._provenance(), "files": digests}, indent=1).encode())
        log.info("exported %s (revision %s) to ONNX in %.1f s", self.name, self.revision, time.perf_counter() - start)

    def _provenance(self) -> dict[str, object]:
        return {"model": self.name, "revision": self.revision, "torch": torch.__version__, "opset": OPSET}

    def _cached_runners(self, folder: Path) -> tuple[Runner, Runner] | None:
        """The two towers of a cached export that is complete, intact and right, else None (logged)."""
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if {k: manifest.get(k) for k in self._provenance()} != self._provenance():
            log.warning("ONNX cache %s was made for %s; exporting again", folder, manifest)
            return None
        files = manifest.get("files", {})
        for tower in TOWERS:
            path = folder / f"{tower}.onnx"
            if not path.is_file() or _sha256(path) != files.get(path.name):
                log.warning("ONNX cache file %s is missing or corrupt; exporting again", path)
                return None
        return self._checked_runners(folder)

    def _checked_runners(self, folder: Path) -> tuple[Runner, Runner] | None:
        """The intact export in ``folder`` loaded, if it reproduces the torch model; else None (logged)."""
        import onnxruntime as ort

        try:
            image, text = (_onnxruntime_runner(ort, folder / f"{tower}.onnx", self.providers) for tower in TOWERS)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types are not exported
            log.warning("onnxruntime cannot load the ONNX cache in %s (%s); exporting again", folder, exc)
            return None
        cosine = self._agreement(image, text)
        if cosine < MIN_COSINE:
            log.warning("the ONNX cache in %s agrees with torch only to cosine %.6f; exporting again", folder, cosine)
            return None
        return image, text

    def _agreement(self, image: Runner, text: Runner) -> float:
        """The least cosine between the towers' rows and the torch model's on the check batch."""
        pixels, tokens = self._check_pixels().numpy(), self.tokenizer(["a photo of a cat", "a dog", "", "x" * 40])
        rows = np.concatenate([image(pixels), text(tokens.numpy())])
        expected = np.concatenate([Encoder.encode_pixels(self, pixels), Encoder.encode_tokens(self, tokens)])
        return float((rows * expected).sum(axis=1).min())

    def _check_pixels(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(CHECK_ITEMS, 3, self.image_size, self.image_size, generator=generator)


class _Tower(torch.nn.Module):
    """One tower of a CLIP as a module of its own, its rows L2-normalised as the engine serves them."""

    def __init__(self, model: torch.nn.Module, tower: str):
        super().__init__()
        self.model, self.tower = model, tower

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.encode_image(x) if self.tower == "image" else self.model.encode_text(x)
        return F.normalize(features.float(), dim=-1)


def _export_tower(module: torch.nn.Module, example: torch.Tensor, tower: str, folder: Path) -> str:
    """Export one tower to ``folder/{tower}.onnx``; its SHA-256."""
    name = "pixels" if tower == "image" else "tokens"
    with warnings.catch_warnings(), _quiet("onnxscript", "onnx_ir"), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter warns about its own internals
        try:
            program = torch.onnx.export(
                module,
                (example,),
                input_names=[name],
                output_names=["embeddings"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}},
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # the exporter raises many kinds; all mean "no export"
            raise VendorCliError(
                f"cannot export the {tower} tower to ONNX ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "serve this model with --engine torch"
            ) from exc
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = Path(tmp) / f"{tower}.onnx"
        program.save(str(staged))
        digest = _sha256(staged)
        os.replace(staged, folder / staged.name)
    return digest


def cache_folder(cache_dir: Path | None, model: str, revision: str, weights: str = "none") -> Path:
    """Where the export of ``model`` at ``revision`` lives, one folder per revision: under ``cache_dir``
    when given; else next to the weights (``onnx-cache/`` beside a checkpoint file, where writable);
    else in the user's cache (``$XDG_CACHE_HOME/vl2v-vendor/onnx``, ``~/.cache`` by default), as for
    random init and open_clip tags, which have no file of their own."""
    beside = Path(weights).parent / "onnx-cache"
    if cache_dir is not None:
        base = cache_dir
    elif Path(weights).is_file() and os.access(beside if beside.exists() else beside.parent, os.W_OK):
        base = beside
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vl2v-vendor" / "onnx"
    return base / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}-{revision}"


def _providers(ort, device: str) -> list[str]:
    """onnxruntime's execution providers for ``device``; a GPU needs onnxruntime-gpu's CUDA provider."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise VendorCliError(
            f"--engine onnx on {device} needs onnxruntime's CUDA provider (pip install onnxruntime-gpu); "
            f"this onnxruntime has {', '.join(ort.get_available_providers())}"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _onnxruntime_runner(ort, path: Path, providers: list[str]) -> Runner:
    """An onnxruntime session on one tower, as a function of its one input."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # threads that spin while they wait steal the cores decoding needs (as OMP_WAIT_POLICY=PASSIVE for torch)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads := omp_threads():
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=providers)
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def omp_threads() -> int | None:
    """``OMP_NUM_THREADS`` as a number, where the operator set one: every engine's thread count."""
    threads = os.environ.get("OMP_NUM_THREADS", "")
    return int(threads) if threads.isdigit() else None


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """The exporter's own INFO/WARNING chatter (hundreds of lines per tower) kept out of the server's log."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_atomically(path: Path, data: bytes) -> None:
    staged = path.with_name(path.name + ".partial")
    staged.write_bytes(data)
    os.replace(staged, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
