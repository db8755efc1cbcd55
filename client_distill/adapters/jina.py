"""Adapter for Jina-style embedding APIs (``jina-clip-v1/-v2``): one ``input`` list of
``{"text": ...}`` / ``{"image": base64}`` items, ``normalized`` and ``embedding_type`` options.

Jina reports an empty account as 403 ``AUTHZ_INSUFFICIENT_BALANCE`` (and some deployments 402);
both are :class:`BudgetExhausted`, any other 403 is an auth problem.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import httpx

from client_distill.adapters.base import Adapter, Modality, Payload
from client_distill.adapters.errors import BudgetExhausted
from client_distill.adapters.transport import error_info

DEFAULT_MODEL = "jina-clip-v2"


class JinaAdapter(Adapter):
    name = "jina"
    default_batch_limit = 2048  # the cap Jina's client libraries use per request

    async def default_model(self) -> str:
        return DEFAULT_MODEL  # Jina has no model listing; its CLIP model is named in every request

    def options(self) -> dict[str, Any]:
        return {"normalized": True, "embedding_type": "float"}

    def body(self, modality: Modality, payloads: Sequence[Payload]) -> dict[str, Any]:
        if modality == "text":
            items = [{"text": p} for p in payloads]
        else:
            items = [{"image": base64.b64encode(p).decode("ascii")} for p in payloads]  # type: ignore[arg-type]
        return {"model": self.model, "input": items, **self.options()}

    def classify(self, response: httpx.Response) -> Exception:
        code, message = error_info(response)
        balance = "BALANCE" in f"{code} {message}".upper()
        if response.status_code == 402 or (response.status_code == 403 and balance):
            return BudgetExhausted(
                f"jina vendor answered {response.status_code}: {message}", response.status_code, code
            )
        return super().classify(response)
