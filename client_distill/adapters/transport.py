"""The HTTP exchange with one vendor, and how its error answers read: :class:`Transport` holds the
``httpx.AsyncClient`` (opened and closed with the adapter) and turns what the network does into the
client's exceptions; :func:`error_info` and :func:`error_text` read the error shapes vendors use.

``transport`` replaces the network under the ``httpx.AsyncClient`` (httpx's own seam: an
``httpx.MockTransport`` in unit tests, a proxy or an ASGI app elsewhere).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from client_distill.adapters.errors import TransientError


class Transport:
    """One vendor's HTTP client: ``base_url``, ``headers()`` on every request, at most ``concurrency``
    requests in flight (a few connections to spare), ``timeout_s`` per request. An answer of status 400
    or more raises what ``classify(response)`` returns; a network failure raises
    :class:`~client_distill.adapters.errors.TransientError`, with ``maybe_charged`` True when the
    request may have reached the vendor whole."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Callable[[], dict[str, str]],
        classify: Callable[[httpx.Response], Exception],
        concurrency: int,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._headers = headers
        self._classify = classify
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def open(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self._timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=self._concurrency + 2),
            transport=self._transport,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange; error answers and network failures become our exceptions."""
        if self._client is None:
            raise RuntimeError("use the adapter as `async with adapter:`")
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        try:
            response = await self._client.request(method, path, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # never reached the vendor: nothing can have been billed
            raise TransientError(f"cannot connect to {self.base_url}: {type(exc).__name__} {exc}") from exc
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # the request never arrived whole, and no vendor bills a request it has not read
            raise TransientError(f"{type(exc).__name__} sending to {self.base_url}: {exc}") from exc
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransientError(f"{type(exc).__name__} talking to {self.base_url}: {exc}", maybe_charged=True) from exc
        if response.status_code >= 400:
            raise self._classify(response)
        return response


def _without_echo(value: Any) -> Any:
    """An error body less the ``input`` fields pydantic validation errors echo (FastAPI's 422, e.g.
    infinity's): they repeat the whole request (megabytes of base64) and the user's own texts, which
    must neither flood a message nor be read as the vendor's words."""
    if isinstance(value, dict):
        return {k: _without_echo(v) for k, v in value.items() if k != "input"}
    if isinstance(value, list):
        return [_without_echo(v) for v in value]
    return value


def error_body(response: httpx.Response) -> Any:
    """An error answer's JSON body (None when it is not JSON)."""
    try:
        return response.json()
    except ValueError:
        return None


def error_info(response: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` from the error shapes vendors use: ``{"error": {"code"|"type",
    "message"}}`` (OpenAI, ours), ``{"error": "..."}``, or FastAPI's ``{"detail": ...}`` (Jina)."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or err.get("type") or ""), str(err.get("message") or err)
    if isinstance(err, str):
        return err, err
    detail = _without_echo(body.get("detail", body) if isinstance(body, dict) else body)
    return "", detail if isinstance(detail, str) else json.dumps(detail)[:300]


def error_text(response: httpx.Response) -> str:
    """All an error answer says (less echoed input), for telling a size refusal from other 4xx."""
    try:
        return json.dumps(_without_echo(response.json()))
    except ValueError:
        return response.text[:4000]
