"""``vl2v demo``: the whole vendor–client simulation in one command.

It prepares what is missing (the synthetic synth-pacs data; the vendor's model and the student are
committed checkpoints), starts the vendor as a *separate process* on 127.0.0.1 (or uses the vendor
given by ``--vendor-url``/``VL2V_VENDOR_URL``), creates an API key with a budget, runs the budget sweep
of ``configs/demo.yaml`` (ADiP and baselines), writes ``report.md`` and ``accuracy_vs_budget.png``, prints
the table and stops the vendor, also on Ctrl-C or failure. Everything is resumable: a second run
reuses the data, the paid embeddings (client cache) and finished runs.

The vendor is started as a separate program (:mod:`client_distill.buy.local_vendor`), never imported:
the client side only ever sees the vendor over HTTP.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from client_distill.buy.local_vendor import start_vendor, vendor_cli
from client_distill.buy.vendor import VendorConfig
from client_distill.data.synth import write_synth
from client_distill.errors import UsageError
from client_distill.sweep.config import DemoConfig, EmbedConfig, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "sweep" / "configs" / "demo.yaml"


#: rows of every forward of the vendor the demo and the protocols start: the online mode's 48 views a step
#: and the teacher sets' requests divide by it
FIXED_BATCH = 16


@contextlib.contextmanager
def local_vendor(workdir: Path, budget: int) -> Iterator[tuple[str, str]]:
    """Start ``vl2v-vendor serve --engine torch`` on a free loopback port with its own ledger, create a key with
    ``budget`` queries, yield ``(url, key)``, and stop the vendor whatever happens."""
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "ledger.sqlite3"
    created = subprocess.run(
        vendor_cli("keys", "create", "--db", str(db), "--name", f"demo-{int(time.time())}", "--budget", str(budget)),
        capture_output=True, text=True,
    )  # fmt: skip
    if created.returncode != 0:
        raise UsageError(f"could not create the demo's API key: {created.stderr.strip()}")
    # the reference engine: the teacher's rows then do not depend on whether this CPU has bf16 units (the
    # vendor's default, openvino, runs bf16 where that is faster), so published figures reproduce bit for bit on
    # any machine of one CPU kind (across kinds float32 kernels differ in the last bits:
    # docs/results/synth-officehome/runs/README.md); and
    # forwards of a fixed 16 rows, so that they do not depend on how the vendor batched its traffic either (a
    # rerun's teacher set differed in 0.1 % of its float16 values without: docs/results/demo/report.md)
    vendor = start_vendor(
        "--db", str(db), "--engine", "torch", log=workdir / "vendor.log",
        env={**os.environ, "VL2V_VENDOR_FIXED_BATCH": str(FIXED_BATCH)},
    )  # fmt: skip
    try:
        print(f"vendor ready at {vendor.url} (log: {workdir / 'vendor.log'})", flush=True)
        yield vendor.url, created.stdout.strip()
    finally:
        vendor.stop(timeout_s=20)
        print("vendor stopped", flush=True)


def ensure_data(data: Path, task: str, per_class: int, seed: int) -> None:
    """Render the synthetic task once; a complete folder is reused as it is."""
    if (data / ".complete").is_file():
        return
    # an earlier render was interrupted when the folder exists: redo it deterministically
    write_synth(task, data, per_class=per_class, seed=seed, overwrite=data.exists())
    (data / ".complete").write_text("ok\n")


def run_demo(
    out: Path, data: Path, config: Path, vendor: str, vendor_url: str | None, api_key: str | None, workers: int
) -> Path:
    """Run the demo and return the report's path."""
    from client_distill.report.report import write_report  # these import torch: not at `vl2v --help` time
    from client_distill.sweep.run import run_sweep

    cfg = load_config(config, {"data": str(data), "out": str(out / "runs")})
    demo = cfg.demo or DemoConfig()
    ensure_data(data, demo.task, demo.per_class, demo.seed)
    cfg.embed = (cfg.embed or EmbedConfig()).model_copy(update={"cache": str(out / "cache")})
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if vendor_url is None:
            vendor_url, api_key = stack.enter_context(local_vendor(out / "vendor", demo.key_budget))
            vendor = "vl2v"
        # the vendor the sweep buys from where its config does not say, the demo's cache holding the
        # query ledger of its online runs too; the key travels in memory only, never on a command line
        here = VendorConfig(vendor=vendor, vendor_url=vendor_url, api_key=api_key or None, cache=cfg.embed.cache)
        outcome = run_sweep(cfg, workers=workers, vendor=here)
    if outcome["failed"]:
        print(
            f"{len(outcome['failed'])} run(s) failed; their logs: "
            + ", ".join(f"{d}/log.txt" for d in outcome["failed"][:3]),
            file=sys.stderr,
        )
    report = write_report(out / "runs", out)
    print(report.read_text())
    print(
        f"demo finished in {time.monotonic() - started:.0f} s; report: {report}; plot: {out / 'accuracy_vs_budget.png'}"
    )
    return report
