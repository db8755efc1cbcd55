"""Adapter for our own vendor (``vl2v-vendor serve``, issue 2's contract in :mod:`shared.protocol`).

It honours ``Idempotency-Key`` (a resend is replayed, not charged), reports the exact number of
queries charged in ``usage.queries``, and has a ``/v1/usage`` endpoint to reconcile the ledger with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.protocol import EMBEDDINGS_PATH, USAGE_PATH, EmbeddingUsage, KeyUsage

from client_distill.adapters.base import Adapter, Modality, Payload, data_uri


class Vl2vAdapter(Adapter):
    name = "vl2v"
    default_batch_limit = 256  # the vendor's default max items per request
    idempotent = True
    embeddings_path = EMBEDDINGS_PATH

    def body(self, modality: Modality, payloads: Sequence[Payload]) -> dict[str, Any]:
        items = [{"text": p} if modality == "text" else {"image": data_uri(p)} for p in payloads]  # type: ignore[arg-type]
        return {"model": self.model, "input": items, "encoding_format": "base64"}

    def charged(self, usage: dict[str, Any], n: int) -> int:
        return EmbeddingUsage.model_validate(usage).queries if usage else n

    async def usage(self) -> dict[str, Any] | None:
        response = await self._retrying(self._request, "GET", USAGE_PATH)
        return KeyUsage.model_validate(response.json()).model_dump()
