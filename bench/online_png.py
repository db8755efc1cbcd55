"""What the online mode's PNG zlib level costs each side, per step, side by side in one run.

The online mode (``vl2v distill --teacher-mode online``) encodes every augmented view of every step as
PNG (:data:`client_distill.train.run.ONLINE_PNG_LEVEL`) and the vendor decodes each one
(:func:`vendor_server.images.decode`: the CRCs, then libspng, which also refuses data that ends
early). For one training batch of real views (the augmentation applied to a dataset's images), per
level: the client's encoding time, the vendor's decoding time (the header read, then ``decode``),
the bytes per view, and whether the decoded pixels are exactly the ones encoded. Medians over
``--rounds``; levels interleaved round by round.

    .venv/bin/python bench/online_png.py --data data/synth-pacs        # after `make demo`

Measured 2026-12-07 at ba591cc on synth-pacs views (48 × 64 px spread over the domains and classes, one
core, the sweep held stopped), with the vendor's decoding of then (Pillow, after inflating the data once
more to check its length): level 0 encodes in 9.5 ms and decodes in 5.7 ms at 12.1 KB a view; level 1
15.9 / 12.1 ms at 4.8 KB; level 6 28.6 / 11.2 ms at 4.4 KB; every level lossless.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from client_distill.data.image_store import png_bytes
from client_distill.train.augment import BatchAugment
from vendor_server.images import InspectedImage, decode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a folder of images (searched recursively)")
    p.add_argument("--size", type=int, default=64, help="the student's input size")
    p.add_argument("--batch", type=int, default=48, help="views per step")
    p.add_argument("--levels", type=int, nargs="+", default=[0, 1, 6])
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(1)
    files = sorted(f for f in args.data.rglob("*") if f.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if len(files) < args.batch:
        raise SystemExit(f"{args.data} holds {len(files)} images; {args.batch} are needed")
    files = files[:: len(files) // args.batch][: args.batch]  # spread over the domains and classes
    pictures = torch.stack(
        [
            torch.from_numpy(np.array(Image.open(f).convert("RGB").resize((args.size,) * 2))).permute(2, 0, 1)
            for f in files
        ]
    )
    aug = BatchAugment(args.size, (0.5,) * 3, (0.5,) * 3)
    views = aug.pixels(pictures, torch.Generator().manual_seed(0)).mul(255).round().to(torch.uint8)
    arrays = [v.permute(1, 2, 0).numpy() for v in views]

    def encode(level: int) -> list[bytes]:
        return [png_bytes(Image.fromarray(a), level) for a in arrays]

    def vendor_decode(blobs: list[bytes]) -> list[np.ndarray]:
        out = []
        for blob in blobs:
            with Image.open(io.BytesIO(blob)) as img:  # what the vendor's inspection reads: the header
                size = img.size
            out.append(np.asarray(decode(InspectedImage(0, blob, "PNG", *size))))
        return out

    times: dict[int, dict[str, list[float]]] = {lv: {"encode": [], "decode": []} for lv in args.levels}
    for _ in range(args.rounds):
        for level in args.levels:
            t0 = time.perf_counter()
            blobs = encode(level)
            t1 = time.perf_counter()
            vendor_decode(blobs)
            times[level]["encode"].append(t1 - t0)
            times[level]["decode"].append(time.perf_counter() - t1)
    print(f"{len(arrays)} views of {args.size} px from {args.data}, {args.rounds} rounds (median), one thread")
    for level in args.levels:
        blobs = encode(level)
        same = all(np.array_equal(a, b) for a, b in zip(arrays, vendor_decode(blobs), strict=True))
        enc, dec = (statistics.median(times[level][k]) * 1e3 for k in ("encode", "decode"))
        size = sum(map(len, blobs)) / len(blobs) / 1024
        print(f"level {level}: encode {enc:6.1f} ms, vendor decode {dec:6.1f} ms, {size:5.1f} KB/view, lossless {same}")


if __name__ == "__main__":
    main()
