"""Vendor adapters by name (``vl2v``, ``openai``, ``jina``), so swapping vendors is configuration: the
flags, the environment and sweep configs name one (:class:`client_distill.buy.vendor.VendorConfig`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from client_distill.adapters.base import Adapter
from client_distill.adapters.jina import JinaAdapter
from client_distill.adapters.openai import OpenAIAdapter
from client_distill.adapters.vl2v import Vl2vAdapter
from client_distill.errors import UsageError

ADAPTERS: dict[str, type[Adapter]] = {cls.name: cls for cls in (Vl2vAdapter, OpenAIAdapter, JinaAdapter)}


def create_adapter(name: str, base_url: str, api_key: str | None = None, **kwargs: object) -> Adapter:
    """An adapter for vendor ``name`` at ``base_url``; ``kwargs`` go to :class:`Adapter` (e.g.
    ``transport=httpx.MockTransport(...)`` to talk to a fake instead of the network)."""
    if name not in ADAPTERS:
        raise UsageError(f"unknown vendor {name!r}; choose one of {', '.join(ADAPTERS)}")
    if not base_url:
        raise UsageError("no vendor URL: pass --vendor-url or set VL2V_VENDOR_URL")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        # without a scheme httpx sees no host, and every attempt would be retried until the deadline
        raise UsageError(f"the vendor URL {base_url!r} is not an http:// or https:// URL with a host")
    return ADAPTERS[name](base_url, api_key, **kwargs)  # type: ignore[arg-type]
