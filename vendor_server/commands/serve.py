"""``vl2v-vendor serve``: run the embedding service with uvicorn."""

from __future__ import annotations

import argparse
import os
import socket

from vendor_server.engines import ENGINES


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
    p.add_argument(
        "--engine",
        choices=ENGINES,
        help="what runs the model: torch (the reference); onnx (ONNX Runtime; the towers are exported once per "
        "weights revision and cached); openvino (that export compiled by OpenVINO for the CPU, in bf16 or "
        "float32, the faster measured at start-up of those whose rows agree with torch); or auto, the fastest "
        "measured: openvino on a CPU, torch on a GPU (default auto)",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        help="where the model runs (default auto: the GPU when there is one)",
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default 8000)")
    p.add_argument(
        "--db",
        help="ledger of keys and usage: a SQLite file (default ./vl2v-vendor.sqlite3; one process), or a "
        "postgresql://user:password@host:port/dbname URL shared by workers and replicas "
        "(env VL2V_VENDOR_DB or VL2V_DB)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="uvicorn worker processes on this host, each with its own model (default 1; more needs --db postgresql://...)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level; debug also logs every request (default info)",
    )
    p.set_defaults(func=run)


def check_port_free(host: str, port: int) -> None:
    """Refuse, in one line, an address this process cannot listen on (a port in use, a host that is
    not this machine's), before the model is loaded: uvicorn would report it only after the load, in
    several log lines, with exit status 3. Bound as uvicorn binds (``SO_REUSEADDR``), then released."""
    from vendor_server.errors import VendorCliError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise VendorCliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    # OpenMP threads that spin while they wait steal the cores the event loop and image decoding need
    # (the tiny encoder ran ~5x faster with passive waiting on a busy 2-core CPU); sleeping waiters cost
    # nothing measurable for a CLIP forward. OpenMP reads it once, when torch loads, so it is set here,
    # before the imports below, and only for serving: other commands (pretraining) keep OpenMP's default.
    # An operator's own OMP_WAIT_POLICY wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from vendor_server.app import create_app
    from vendor_server.engines import open_encoder
    from vendor_server.errors import VendorCliError
    from vendor_server.ledger import is_postgres_url, open_ledger
    from vendor_server.settings import load_settings

    overrides = {
        k: v
        for k in ("model", "pretrained", "seed", "engine", "device", "host", "port", "db", "workers")
        if (v := getattr(args, k)) is not None
    }
    settings = load_settings(**overrides)
    if settings.workers > 1 and not is_postgres_url(settings.db):
        raise VendorCliError(
            f"--workers {settings.workers} needs a ledger the workers can share: --db postgresql://... "
            "(a SQLite ledger serves one process)"
        )
    check_port_free(settings.host, settings.port)  # before the ledger and the model, like a bad --db
    # a bad --db is reported at once, not after a model load
    ledger = open_ledger(settings.db, **settings.ledger_options())
    common = {"host": settings.host, "port": settings.port, "log_level": args.log_level}
    if settings.workers > 1:
        ledger.close()  # each worker opens its own; this one only checked the URL and the schema
        # the workers are fresh interpreters that read their settings from the environment
        os.environ.update({f"VL2V_VENDOR_{k.upper()}": str(v) for k, v in overrides.items()})
        uvicorn.run(
            "vendor_server.app:worker_app",
            factory=True,
            workers=settings.workers,
            access_log=args.log_level == "debug",
            **common,
        )
        return 0
    encoder = open_encoder(settings)
    uvicorn.run(create_app(settings, encoder, ledger), access_log=args.log_level == "debug", **common)
    return 0
