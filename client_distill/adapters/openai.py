"""Adapter for OpenAI-compatible ``/v1/embeddings`` servers (OpenAI itself, TEI, vLLM, LiteLLM,
infinity). Texts are plain strings; images use infinity's extension: the same endpoint with
``"modality": "image"`` and data URIs as inputs.

OpenAI signals an empty account with 429 ``insufficient_quota``, the same status as a rate limit,
so the code decides: that one is :class:`BudgetExhausted` and never retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from client_distill.adapters.base import Adapter, Modality, Payload, data_uri, error_info
from client_distill.adapters.errors import BudgetExhausted

#: error codes/types OpenAI-compatible servers use for "out of money", not "slow down"
QUOTA_CODES = {"insufficient_quota", "budget_exceeded", "billing_hard_limit_reached"}


class OpenAIAdapter(Adapter):
    name = "openai"
    default_batch_limit = 2048  # OpenAI's documented max array length for `input`

    def body(self, modality: Modality, payloads: Sequence[Payload]) -> dict[str, Any]:
        if modality == "text":
            return {"model": self.model, "input": list(payloads), "encoding_format": "float"}
        return {
            "model": self.model,
            "input": [data_uri(p) for p in payloads],
            "modality": "image",
            "encoding_format": "float",
        }  # type: ignore[arg-type]

    def classify(self, response: httpx.Response) -> Exception:
        code, message = error_info(response)
        if response.status_code in (400, 429) and code in QUOTA_CODES:
            return BudgetExhausted(
                f"openai vendor answered {response.status_code} {code}: {message}", response.status_code, code
            )
        return super().classify(response)
