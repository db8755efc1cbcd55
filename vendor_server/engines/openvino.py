"""The OpenVINO engine: the ONNX engine's export, compiled by OpenVINO for this CPU.

It shares the ONNX engine's cache (the same files, the same manifest and checks: :mod:`.onnx`) and
differs in what runs them. On a CPU with bf16 matrix units (Intel AMX or AVX-512 BF16) OpenVINO runs the
towers in bf16 with float32 accumulation, which neither PyTorch eager (its bf16 autocast is slower than
float32 for a ViT on such a CPU) nor onnxruntime does: 4-5x the torch engine's raw forward on one thread,
for ViT-B-32 and for vl2v-tiny (docs/benchmarks.md). bf16 is used only if the rows it gives reproduce the
float32 torch model to the engines' bound (cosine ≥ :data:`~.onnx.MIN_COSINE` on the check batch);
otherwise, and on a CPU without bf16 units, the towers run in float32. ``/v1/models`` states which.

CPU only: OpenVINO's GPU plugin is for Intel GPUs; on a CUDA GPU the torch and onnx engines apply."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vendor_server.engines.onnx import MIN_COSINE, TOWERS, OnnxEncoder, Runner, omp_threads
from vendor_server.errors import VendorCliError

log = logging.getLogger("vl2v.vendor")

#: OpenVINO's names for the precisions tried, fastest first, and what /v1/models calls them
PRECISIONS = {"bf16": "bf16", "f32": "float32"}


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

    @property
    def runtime(self) -> str:
        return f"OpenVINO {self._core.get_versions('CPU')['CPU'].build_number}, CPU, {self.precision}"

    @property
    def precision(self) -> str:
        return PRECISIONS[self._precision]

    def _checked_runners(self, folder: Path) -> tuple[Runner, Runner] | None:
        """The export compiled in the fastest precision that reproduces the torch model."""
        for precision in self._candidates:
            try:
                image, text = (self._compiled(folder / f"{tower}.onnx", precision) for tower in TOWERS)
            except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own kinds alike
                log.warning("OpenVINO cannot compile the ONNX cache in %s (%s); exporting again", folder, exc)
                return None
            cosine = self._agreement(image, text)
            if cosine >= MIN_COSINE:
                self._precision = precision
                return image, text
            log.warning("OpenVINO in %s agrees with torch only to cosine %.6f", precision, cosine)
        return None

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
