"""Served vs raw throughput of the vendor, side by side in one run on one machine.

Prints, for each model: raw in-process encoder images/s (the model's own preprocessing + forward
pass on decoded images, in this process), served images/s with batch-64 requests, served images/s
with 32 concurrent single-image clients, and the two served/raw ratios. The server runs as a real
``vl2v-vendor serve`` subprocess on a loopback port; request bodies are prepared before timing so
the clients cost little CPU.

    python bench/vendor_throughput.py                       # ViT-B-32 (random init) and vl2v-tiny
    python bench/vendor_throughput.py --model vl2v-tiny --images 512
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as ``vl2v-vendor serve`` sets it: same torch for raw and served

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from client_distill.buy.local_vendor import start_vendor  # noqa: E402
from vendor_server.encoder import Encoder  # noqa: E402
from vendor_server.ledger import Ledger  # noqa: E402

BATCH = 64
SINGLE_CLIENTS = 32


def synthetic_jpegs(n: int, size: int, seed: int = 0) -> list[bytes]:
    """Photo-like JPEGs (smooth gradients + noise) at the model's input size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        base = np.stack([np.sin(xx * rng.uniform(1, 9) + rng.uniform(0, 6)) for _ in range(3)], -1)
        pixels = np.clip(127 + 100 * base * yy[..., None] + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def raw_images_per_s(encoder: Encoder, files: list[bytes]) -> float:
    images = [Image.open(io.BytesIO(f)).convert("RGB") for f in files]
    encoder.encode_images(images[:BATCH])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(images), BATCH):
        encoder.encode_images(images[i : i + BATCH])
    return len(images) / (time.perf_counter() - start)


def body(files: list[bytes]) -> bytes:
    return json.dumps(
        {"input": [{"image": base64.b64encode(f).decode()} for f in files], "encoding_format": "base64"}
    ).encode()


async def served_images_per_s(url: str, key: str, bodies: list[bytes], n_images: int, clients: int) -> float:
    """Send ``bodies`` from ``clients`` concurrent connections; images answered per second."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=600, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                response = await client.post("/v1/embeddings", content=queue.get_nowait())
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return n_images / (time.perf_counter() - start)


def bench(model: str, pretrained: str, n_images: int, rounds: int) -> None:
    """Raw, batched and singles measured in alternating rounds; the median of each is reported, so a
    burst of load from elsewhere on a shared machine hits all three alike."""
    encoder = Encoder(model, pretrained)
    size = encoder.image_size
    files = synthetic_jpegs(n_images, size)
    batched_bodies = [body(files[i : i + BATCH]) for i in range(0, n_images, BATCH)]
    single_bodies = [body([f]) for f in files]
    results: dict[str, list[float]] = {"raw": [], "batched": [], "singles": []}
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite3"
        ledger = Ledger(db)
        _, key = ledger.create_key("bench", budget=(2 * rounds + 1) * n_images + BATCH, rate_limit_qps=100_000)
        ledger.close()
        vendor = start_vendor(
            "--model",
            model,
            "--pretrained",
            pretrained,
            "--db",
            str(db),
            "--log-level",
            "warning",
            env={**os.environ, "VL2V_VENDOR_QUEUE_LIMIT": "100000"},
            ready_timeout_s=300,
        )
        url = vendor.url
        try:
            asyncio.run(served_images_per_s(url, key, batched_bodies[:1], BATCH, 1))  # warm-up
            for _ in range(rounds):
                results["raw"].append(raw_images_per_s(encoder, files))
                results["batched"].append(asyncio.run(served_images_per_s(url, key, batched_bodies, n_images, 2)))
                results["singles"].append(
                    asyncio.run(served_images_per_s(url, key, single_bodies, n_images, SINGLE_CLIENTS))
                )
        finally:
            vendor.stop(timeout_s=30)
    raw, batched, singles = (float(np.median(results[k])) for k in ("raw", "batched", "singles"))
    print(
        f"{model} (pretrained={pretrained}, {n_images} JPEGs of {size}x{size} px, torch threads="
        f"{torch.get_num_threads()}, median of {rounds} rounds):"
    )
    print(f"  raw in-process encoder           {raw:8.1f} images/s")
    print(f"  served, batch-{BATCH} requests        {batched:8.1f} images/s   served/raw = {batched / raw:.2f}")
    print(f"  served, {SINGLE_CLIENTS} single-image clients {singles:8.1f} images/s   served/raw = {singles / raw:.2f}")
    print(
        "  per round (raw, batched, singles): "
        + "; ".join(f"{r:.1f}, {b:.1f}, {s:.1f}" for r, b, s in zip(*results.values(), strict=True)),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="one model (default: ViT-B-32 at random init, then vl2v-tiny)")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--images", type=int, help="images per measurement (default 128 for ViT-B-32, 1024 tiny)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds (median reported)")
    args = parser.parse_args()
    runs = [(args.model, args.pretrained)] if args.model else [("ViT-B-32", "none"), ("vl2v-tiny", "none")]
    for model, pretrained in runs:
        bench(model, pretrained, args.images or (1024 if model == "vl2v-tiny" else 128), args.rounds)


if __name__ == "__main__":
    main()
