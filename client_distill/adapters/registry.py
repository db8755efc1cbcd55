"""Choose a vendor adapter by name, from flags or the environment (``VL2V_VENDOR``,
``VL2V_VENDOR_URL``, ``VL2V_API_KEY``, ``VL2V_MODEL``, read by :mod:`client_distill.buy.settings`), so
swapping vendors is configuration."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from client_distill.adapters.base import Adapter
from client_distill.adapters.jina import JinaAdapter
from client_distill.adapters.openai import OpenAIAdapter
from client_distill.adapters.vl2v import Vl2vAdapter
from client_distill.buy.cache import CacheDirLimits
from client_distill.errors import UsageError

if TYPE_CHECKING:  # settings validates vendor names against ADAPTERS: it imports this module
    from client_distill.buy.settings import ClientSettings

ADAPTERS: dict[str, type[Adapter]] = {cls.name: cls for cls in (Vl2vAdapter, OpenAIAdapter, JinaAdapter)}


def create_adapter(name: str, base_url: str, api_key: str | None = None, **kwargs: object) -> Adapter:
    """An adapter for vendor ``name`` at ``base_url``; ``kwargs`` go to :class:`Adapter` (e.g.
    ``transport=httpx.MockTransport(...)`` to talk to a fake instead of the network)."""
    if name not in ADAPTERS:
        raise UsageError(f"unknown vendor {name!r}; choose one of {', '.join(ADAPTERS)}")
    if not base_url:
        raise UsageError("no vendor URL: pass --vendor-url or set VL2V_VENDOR_URL")
    return ADAPTERS[name](base_url, api_key, **kwargs)  # type: ignore[arg-type]


def add_vendor_arguments(parser: argparse.ArgumentParser, settings: ClientSettings) -> None:
    """The flags that pick a vendor; each defaults to its environment variable, read in ``settings``."""
    parser.add_argument(
        "--vendor", default=settings.vendor, choices=sorted(ADAPTERS), help="vendor API flavour (env VL2V_VENDOR)"
    )
    parser.add_argument("--vendor-url", default=settings.vendor_url, help="vendor base URL (env VL2V_VENDOR_URL)")
    parser.add_argument("--api-key", default=settings.api_key, help="API key (env VL2V_API_KEY)")
    parser.add_argument("--model", default=settings.model, help="vendor model id (default: the vendor's first)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--batch-size", type=int, default=None, help="items per request (default: the vendor's limit)")
    parser.add_argument("--retry-deadline", type=float, default=600.0, help="seconds to keep retrying a failing vendor")


def adapter_from_args(args: argparse.Namespace) -> Adapter:
    """The adapter the flags describe; where the command has a ``--cache``, the item limits it
    learns from the vendor's size refusals are kept there for the next run."""
    cache = getattr(args, "cache", None)
    return create_adapter(
        args.vendor,
        args.vendor_url,
        args.api_key,
        model=args.model,
        concurrency=args.concurrency,
        batch_limit=args.batch_size,
        retry_deadline_s=args.retry_deadline,
        limits=CacheDirLimits(cache) if cache else None,
    )
