"""The distilled student's throughput beside the vendor's served throughput, same images, one run, one machine.

Both sides do the whole job from image files to an answer: the student (an ONNX export, as ``vl2v
predict`` runs it: :func:`client_distill.deploy.predict.open_model`, decode + resize + normalise + onnxruntime,
batches of 64) gives class probabilities; the vendor (``vl2v-vendor serve`` with its default vl2v-tiny
checkpoint, a real subprocess on a loopback port, its own key) gives image embeddings for batch-64
requests from two concurrent clients (what ``vl2v embed`` sends; the vendor's zero-shot classifier would
still have to multiply them with the class prompts). Measurements alternate in rounds and the median of
each side is reported, so load from elsewhere on a shared machine hits both alike. Prints both, the
ratio, and what the vendor charged for the images it embedded.

    python bench/student_vs_vendor.py --export student --data data/synth-pacs-100 --images 512
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as ``vl2v-vendor serve`` sets it

import httpx  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's request helpers
from vendor_throughput import BATCH, body, served_images_per_s  # noqa: E402

from client_distill.deploy.model_info import ModelInfo  # noqa: E402
from client_distill.deploy.predict import decode_image, open_model, preprocess  # noqa: E402
from client_distill.report.demo import local_vendor  # noqa: E402
from shared.protocol import MODELS_PATH, USAGE_PATH  # noqa: E402

VENDOR_CLIENTS = 2


def image_files(root: Path, n: int) -> list[Path]:
    """The first ``n`` PNG/JPEG files under ``root``, in sorted order (the same files every run)."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(files) < n:
        raise SystemExit(f"{root} has {len(files)} images, fewer than --images {n}")
    return files[:n]


def student_images_per_s(export: Path, files: list[Path]) -> float:
    """Files → probabilities through the export, batches of :data:`BATCH`, as ``vl2v predict`` does."""
    predictor = open_model(export)
    info = predictor.info
    start = time.perf_counter()
    for i in range(0, len(files), BATCH):
        pictures = np.stack([decode_image(f, info.preprocessing.image_size) for f in files[i : i + BATCH]])
        predictor.logits(preprocess(pictures, info.preprocessing))
    return len(files) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", required=True, type=Path, help="an ONNX export folder (vl2v export --out)")
    parser.add_argument("--data", required=True, type=Path, help="a folder of images (searched recursively)")
    parser.add_argument("--images", type=int, default=512, help="images per measurement (default 512)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median reported)")
    args = parser.parse_args()
    info = ModelInfo.read(args.export)
    if info.model_format != "onnx":
        raise SystemExit(f"{args.export} is a {info.model_format} export; this benchmark times the ONNX one")
    files = image_files(args.data, args.images)
    bodies = [body([f.read_bytes() for f in files[i : i + BATCH]]) for i in range(0, len(files), BATCH)]
    student: list[float] = []
    vendor: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, local_vendor(Path(tmp), (args.rounds + 1) * len(files)) as (url, key):
        asyncio.run(served_images_per_s(url, key, bodies[:1], min(BATCH, len(files)), 1))  # warm-up
        student_images_per_s(args.export, files[:BATCH])
        for _ in range(args.rounds):
            student.append(student_images_per_s(args.export, files))
            vendor.append(asyncio.run(served_images_per_s(url, key, bodies, len(files), VENDOR_CLIENTS)))
        usage = httpx.get(f"{url}{USAGE_PATH}", headers={"Authorization": f"Bearer {key}"}).json()
        card = httpx.get(f"{url}{MODELS_PATH}", headers={"Authorization": f"Bearer {key}"}).json()["data"][0]
    s, v = statistics.median(student), statistics.median(vendor)
    print(
        f"{len(files)} images of {args.data} ({info.preprocessing.image_size} px student input), cpu_count="
        f"{os.cpu_count()}, median of {args.rounds} alternating rounds:"
    )
    print(f"  student {info.method} ({info.student}, onnxruntime, files -> probabilities)  {s:8.1f} images/s")
    print(
        f"  vendor {card['id']} (served, batch-{BATCH} requests, {VENDOR_CLIENTS} clients, files -> embeddings)  "
        f"{v:8.1f} images/s"
    )
    print(f"  student / vendor = {s / v:.2f}")
    print(
        f"  per round (student, vendor): {'; '.join(f'{a:.1f}, {b:.1f}' for a, b in zip(student, vendor, strict=True))}"
    )
    price = card.get("price_per_query")
    print(
        f"  the vendor charged {usage.get('images')} image queries for this benchmark "
        f"({usage.get('images', 0) * (price or 0):.3f} at {price} per query); the student, nothing"
    )


if __name__ == "__main__":
    main()
