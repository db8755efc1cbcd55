"""Adapter for OpenAI-compatible embeddings servers (OpenAI itself, TEI, vLLM, LiteLLM, infinity).
Texts are plain strings; images use infinity's extension: the same endpoint with
``"modality": "image"`` and data URIs as inputs.

The base URL follows the OpenAI SDK's convention: it is used as given and ``/embeddings`` (and
``/models``) is appended, so it includes ``/v1`` exactly when the provider's routes do
(``https://api.openai.com/v1``, our vendor's ``http://host:8000/v1``, infinity's default
``http://host:7997`` without a prefix). Guessing instead (always adding or stripping ``/v1``) breaks
one kind of server or the other; a 404 therefore says which URL was tried and what to check.

OpenAI signals an empty account with 429 ``insufficient_quota``, the same status as a rate limit,
so the code decides: that one is :class:`BudgetExhausted` and never retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from client_distill.adapters.base import Adapter, Modality, Payload, data_uri
from client_distill.adapters.errors import BudgetExhausted, InvalidInput
from client_distill.adapters.transport import error_info

#: error codes/types OpenAI-compatible servers use for "out of money", not "slow down"
QUOTA_CODES = {"insufficient_quota", "budget_exceeded", "billing_hard_limit_reached"}


class OpenAIAdapter(Adapter):
    name = "openai"
    default_batch_limit = 2048  # OpenAI's documented max array length for `input`
    embeddings_path = "/embeddings"
    models_path = "/models"

    @classmethod
    def normalise_base_url(cls, base_url: str) -> str:
        """As given (less a trailing slash), as the OpenAI SDK takes ``base_url``."""
        return base_url.rstrip("/")

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
        if response.status_code == 404 and "model" not in code:  # no such route, not an unknown model
            return InvalidInput(
                f"openai vendor answered 404 for {response.request.url}: {message}. The base URL is used as "
                "given and /embeddings appended: include /v1 when the provider's routes have it "
                "(https://api.openai.com/v1, a vl2v vendor's http://HOST:8000/v1; infinity serves "
                "http://HOST:7997/embeddings unless started with --url-prefix /v1)",
                404,
                code,
            )
        return super().classify(response)
