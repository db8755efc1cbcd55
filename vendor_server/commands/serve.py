"""``vl2v-vendor serve``: run the embedding service with uvicorn."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the metered embedding service",
        description="Serve CLIP embeddings over HTTP, metered per query. Every option "
        "can also come from the environment (VL2V_VENDOR_MODEL, ..._PORT, ...).",
    )
    p.add_argument("--model", help="open_clip model name, or vl2v-tiny (default: vl2v-tiny)")
    p.add_argument(
        "--pretrained",
        help="open_clip tag, checkpoint path, or 'none' for random init "
        "(default: the vendor's vl2v-tiny checkpoint when present)",
    )
    p.add_argument(
        "--seed", type=int, help="seed of a random-init model, so restarts serve the same weights (default 0)"
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default 8000)")
    p.add_argument("--db", help="SQLite ledger of keys and usage (default ./vl2v-vendor.sqlite3)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # OpenMP threads that spin while they wait steal the cores the event loop and image decoding need
    # (the tiny encoder ran ~5x faster with passive waiting on a busy 2-core CPU); sleeping waiters cost
    # nothing measurable for a CLIP forward. OpenMP reads it once, when torch loads, so it is set here,
    # before the imports below, and only for serving: other commands (pretraining) keep OpenMP's default.
    # An operator's own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from vendor_server.app import create_app, open_ledger
    from vendor_server.encoder import Encoder
    from vendor_server.settings import load_settings

    overrides = {
        k: v for k in ("model", "pretrained", "seed", "host", "port", "db") if (v := getattr(args, k)) is not None
    }
    settings = load_settings(**overrides)
    ledger = open_ledger(settings)  # a bad --db is reported at once, not after a model load
    encoder = Encoder(settings.model, settings.pretrained_source(), settings.seed)
    uvicorn.run(
        create_app(settings, encoder, ledger),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=args.log_level == "debug",
    )
    return 0
