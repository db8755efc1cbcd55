"""The OpenVINO engine: the ONNX engine's export, compiled by OpenVINO for this CPU.

It shares the ONNX engine's cache (the same files, the same manifest and checks: :mod:`.onnx`) and
differs in what runs them. On a CPU with bf16 units (Intel AMX or AVX-512 BF16) OpenVINO can run the towers
in bf16 with float32 accumulation, which neither PyTorch eager nor onnxruntime does. Whether that is faster
depends on the CPU: with AMX it was 4-5x the torch engine's raw forward for ViT-B-32, on an AMD EPYC with
AVX-512 BF16 2.3x, but on an Intel Xeon with AVX-512 BF16 and no AMX it was 0.6x OpenVINO's own float32
(docs/benchmarks.md). So at start-up every precision the CPU offers is compiled, checked against the
float32 torch model (cosine ≥ :data:`~.onnx.MIN_COSINE` on the check batch) and, where more than one passes,
timed on the image tower (:func:`image_rates`); the server runs the fastest. ``/v1/models`` states which.

CPU only: OpenVINO's GPU plugin is for Intel GPUs; on a CUDA GPU the torch and onnx engines apply."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from vendor_server.engines.onnx import MIN_COSINE, TOWERS, OnnxEncoder, Runner, omp_threads
from vendor_server.errors import VendorCliError

log = logging.getLogger("vl2v.vendor")

#: OpenVINO's names for the precisions tried, and what /v1/models calls them
PRECISIONS = {"bf16": "bf16", "f32": "float32"}
#: images per timed call of the precision measurement (batch 8-64 all ran at one rate in docs/benchmarks.md)
SPEED_BATCH = 16
#: timed calls per precision, alternating between precisions after one warm-up call each (the best is kept)
SPEED_ROUNDS = 2


class OpenVinoEncoder(OnnxEncoder):
    """:class:`~vendor_server.engines.onnx.OnnxEncoder` with the towers compiled by OpenVINO."""

    engine = "openvino"

    def _open_runtime(self) -> None:
        if self.device.type != "cpu":
            raise VendorCliError(
                f"--engine openvino runs on the CPU; on {self.device.type} serve with --engine torch or onnx"
            )
        import openvino

        self._core = openvino.Core()
        capabilities = self._core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self._candidates = [p for p in PRECISIONS if p != "bf16" or "BF16" in capabilities]
        self._precision = self._candidates[-1]
        #: images/s of each precision that reproduced torch, measured at start-up (empty before it)
        self.precision_rates: dict[str, float] = {}

    @property
    def runtime(self) -> str:
        return f"OpenVINO {self._core.get_versions('CPU')['CPU'].build_number}, CPU, {self.precision}"

    @property
    def precision(self) -> str:
        return PRECISIONS[self._precision]

    def _checked_runners(self, folder: Path) -> tuple[Runner, Runner] | None:
        """The export compiled in the fastest precision that reproduces the torch model."""
        agreeing: dict[str, tuple[Runner, Runner]] = {}
        for precision in self._candidates:
            try:
                image, text = (self._compiled(folder / f"{tower}.onnx", precision) for tower in TOWERS)
            except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own kinds alike
                log.warning("OpenVINO cannot compile the ONNX cache in %s (%s); exporting again", folder, exc)
                return None
            cosine = self._agreement(image, text)
            if cosine >= MIN_COSINE:
                agreeing[precision] = image, text
            else:
                log.warning("OpenVINO in %s agrees with torch only to cosine %.6f", precision, cosine)
        if not agreeing:
            return None
        self.precision_rates = image_rates({p: runners[0] for p, runners in agreeing.items()}, self.image_size)
        self._precision = max(self.precision_rates, key=self.precision_rates.__getitem__)
        if len(agreeing) > 1:
            log.info(
                "OpenVINO image tower, images/s: %s; serving in %s",
                ", ".join(f"{PRECISIONS[p]} {r:.1f}" for p, r in self.precision_rates.items()),
                self.precision,
            )
        return agreeing[self._precision]

    def _compiled(self, path: Path, precision: str) -> Runner:
        """The tower compiled for throughput: OpenVINO's streams (on 2 cores, two of one thread each),
        each batch split across them and run at once. One stream spanning every core (the LATENCY hint)
        is as fast alone, but it waits at every layer for its slowest thread: with the decoding pool
        preparing the next requests on the same cores it lost half its speed (105 → 55 images/s for
        ViT-B-32, against 121 → 81 for two streams; docs/benchmarks.md)."""
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "THROUGHPUT"}
        if threads := omp_threads():
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = self._core.compile_model(self._core.read_model(str(path)), "CPU", config)
        requests = [
            compiled.create_infer_request() for _ in range(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        ]

        def run(batch: np.ndarray) -> np.ndarray:
            parts = np.array_split(np.ascontiguousarray(batch), min(len(requests), len(batch)))
            for request, part in zip(requests[: len(parts)], parts, strict=True):
                request.start_async({0: part}, share_inputs=True)
            out = []
            for request in requests[: len(parts)]:
                request.wait()
                out.append(request.get_output_tensor(0).data.copy())
            return np.concatenate(out)

        return run


def image_rates(towers: dict[str, Runner], image_size: int) -> dict[str, float]:
    """Images/s of each precision's image tower on :data:`SPEED_BATCH` seeded random images: one warm-up
    call each, then :data:`SPEED_ROUNDS` timed calls taken in turn, so that a burst of load elsewhere
    falls on every precision alike; the best call counts. A single tower is not timed (rate 0.0): there
    is nothing to choose between."""
    if len(towers) == 1:
        return dict.fromkeys(towers, 0.0)
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((SPEED_BATCH, 3, image_size, image_size), dtype=np.float32)
    for tower in towers.values():
        tower(pixels)
    rates = dict.fromkeys(towers, 0.0)
    for _ in range(SPEED_ROUNDS):
        for precision, tower in towers.items():
            start = time.perf_counter()
            tower(pixels)
            rates[precision] = max(rates[precision], SPEED_BATCH / (time.perf_counter() - start))
    return rates
