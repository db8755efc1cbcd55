"""Seconds per sweep run: a fresh ``python -m client_distill.cli distill`` process (what sweeps did
before) against a run forked from the sweep's preloaded server (:mod:`client_distill.sweep.local`),
side by side on the same short runs.

Each pair runs the same ERM run (no teacher needed) into two fresh folders, one after the other, the
order alternating pair by pair so that load from other processes hits both alike. The runs are
short on purpose: the difference is the per-run start-up (importing torch, timm and the training
code), which a sweep of hundreds of short CPU runs pays once per run.

    python bench/sweep_launch.py                 # 5 pairs, 10 steps each, 20 images per class and domain
    python bench/sweep_launch.py --pairs 10 --steps 40
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from client_distill.sweep.local import RunPool


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--threads", type=int, default=2, help="torch threads per run")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vl2v-launch-bench-"))
    data = root / "data"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "client_distill.cli",
            "data",
            "synth",
            "--task",
            "synth-pacs",
            "--out",
            str(data),
            "--per-class",
            str(args.per_class),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def argv(out: Path) -> list[str]:
        return [
            "distill",
            "--method",
            "erm",
            "--data",
            str(data),
            "--dataset",
            "synth-pacs",
            "--test-domain",
            "sketch",
            "--profile",
            "synth",
            "--hparams",
            f'{{"steps": {args.steps}, "checkpoint_freq": {args.steps}}}',
            "--out",
            str(out),
        ]

    def fresh_process(out: Path) -> None:
        out.mkdir()
        with open(out / "log.txt", "wb") as log:
            env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
            subprocess.run(
                [sys.executable, "-m", "client_distill.cli", *argv(out)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
                check=True,
            )

    times: dict[str, list[float]] = {"fresh process": [], "forked from server": []}
    with RunPool(1) as pool:
        t0 = time.perf_counter()
        assert pool.submit(argv(root / "warmup"), root / "warmup", args.threads).result() == 0
        server_start = time.perf_counter() - t0

        def forked(out: Path) -> None:
            assert pool.submit(argv(out), out, args.threads).result() == 0, (out / "log.txt").read_text()

        sides = [("fresh process", fresh_process), ("forked from server", forked)]
        for i in range(args.pairs):
            for name, launch in sides if i % 2 == 0 else sides[::-1]:
                t0 = time.perf_counter()
                launch(root / f"{name.split()[0]}-{i}")
                times[name].append(time.perf_counter() - t0)
    shutil.rmtree(root)
    print(
        f"{args.pairs} pairs of ERM runs, {args.steps} steps, {args.threads} threads each "
        f"(data: {args.per_class} per class)"
    )
    print(f"first forked run (server start + imports + run): {server_start:.1f} s")
    for name, ts in times.items():
        print(f"  {name:20s} {statistics.mean(ts):6.2f} s per run (± {statistics.stdev(ts) / len(ts) ** 0.5:.2f} s.e.)")
    saved = statistics.mean(times["fresh process"]) - statistics.mean(times["forked from server"])
    print(
        "forked / fresh time ratio "
        f"{statistics.mean(times['forked from server']) / statistics.mean(times['fresh process']):.2f}"
        f"  ({saved:.1f} s saved per run)"
    )


if __name__ == "__main__":
    main()
