"""Flags several ``vl2v`` commands share, and their parsing into the typed values the use cases take
(not a command: :mod:`client_distill.cli` does not list it)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from client_distill.adapters.registry import ADAPTERS
from client_distill.buy.settings import ClientSettings
from client_distill.buy.vendor import VendorConfig
from client_distill.errors import UsageError


def add_vendor_arguments(parser: argparse.ArgumentParser, settings: ClientSettings) -> None:
    """The flags that pick a vendor; each defaults to its environment variable, read in ``settings``."""
    parser.add_argument(
        "--vendor", default=settings.vendor, choices=sorted(ADAPTERS), help="vendor API flavour (env VL2V_VENDOR)"
    )
    parser.add_argument("--vendor-url", default=settings.vendor_url, help="vendor base URL (env VL2V_VENDOR_URL)")
    add_api_key_arguments(parser, settings)
    parser.add_argument("--model", default=settings.model, help="vendor model id (default: the vendor's first)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="items per request (default: the vendor's limit)")
    parser.add_argument(
        "--retry-deadline",
        type=float,
        default=600.0,
        help="seconds to keep retrying a vendor that is unreachable or answers 429/5xx before giving up "
        "(default 600: 10 minutes; the progress line says what it is waiting for)",
    )


def add_api_key_arguments(parser: argparse.ArgumentParser, settings: ClientSettings) -> None:
    """``--api-key`` and ``--api-key-file`` (one or the other): a key given on the command line is
    visible to every user of the machine in ``ps``, a file or ``VL2V_API_KEY`` is not."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--api-key", default=settings.api_key, help="API key (env VL2V_API_KEY; other users see a flag in `ps`)"
    )
    group.add_argument("--api-key-file", metavar="FILE", help="read the API key from FILE (surrounding blanks dropped)")


def api_key(args: argparse.Namespace) -> str | None:
    """The key of :func:`add_api_key_arguments`'s flags: ``--api-key-file``'s content, else ``--api-key``
    (which defaults to ``VL2V_API_KEY``)."""
    if not args.api_key_file:
        return args.api_key
    try:
        key = Path(args.api_key_file).read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --api-key-file: {exc}") from None
    if not key:
        raise UsageError(f"--api-key-file {args.api_key_file} is empty")
    return key


def vendor_config(args: argparse.Namespace) -> VendorConfig:
    """The :class:`VendorConfig` of :func:`add_vendor_arguments`'s flags (and the command's ``--cache``)."""
    cache = getattr(args, "cache", None)
    return VendorConfig(
        vendor=args.vendor,
        vendor_url=args.vendor_url,
        api_key=api_key(args),
        model=args.model,
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        retry_deadline=args.retry_deadline,
        cache=None if cache is None else str(cache),
    )


def fraction_flag(flag: str, value: float | None, of: str) -> float | None:
    """``value`` if it is a fraction in [0, 1] (or None), else a one-line :class:`UsageError` naming
    ``flag`` and what it is a fraction ``of``."""
    if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise UsageError(f"{flag} is a fraction in [0, 1] of {of}, got {value:g}")
    return value


def count_flag(flag: str, value: int | None, what: str, minimum: int = 1) -> int | None:
    """``value`` if it is at least ``minimum`` (or None), else a one-line :class:`UsageError`."""
    if value is not None and value < minimum:
        raise UsageError(f"{flag} is a number of {what}, at least {minimum}; got {value}")
    return value
