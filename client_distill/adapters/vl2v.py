"""Adapter for our own vendor (``vl2v-vendor serve``), whose wire format is :mod:`shared.protocol`.

It honours ``Idempotency-Key`` (a resend is replayed, not charged), reports the exact number of
queries charged in ``usage.queries``, and has a ``/v1/usage`` endpoint to reconcile the ledger with.

Its model names do not pin the weights (the vendor can be restarted with a retrained checkpoint), so
the adapter reads the served revision from ``/v1/models`` on entry (it goes into every cache key) and
checks the ``model_revision`` of every answer against it: an answer from other weights raises
:class:`ModelChanged` instead of mixing two models in one teacher set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from client_distill.adapters.base import Adapter, Modality, Payload, data_uri
from client_distill.adapters.errors import InvalidInput, ModelChanged, VendorError
from shared.protocol import EMBEDDINGS_PATH, MODELS_PATH, USAGE_PATH, EmbeddingUsage, KeyUsage, ModelList


class Vl2vAdapter(Adapter):
    name = "vl2v"
    default_batch_limit = 256  # the vendor's default max items per request
    idempotent = True
    embeddings_path = EMBEDDINGS_PATH
    models_path = MODELS_PATH

    def body(self, modality: Modality, payloads: Sequence[Payload]) -> dict[str, Any]:
        items = [{"text": p} if modality == "text" else {"image": data_uri(p)} for p in payloads]  # type: ignore[arg-type]
        return {"model": self.model, "input": items, "encoding_format": "base64"}

    async def model_card(self) -> dict[str, Any]:
        """The ``/v1/models`` card of :attr:`model` (its revision, logit scale and size; fields a vendor
        too old to report them leaves None); a model the vendor does not serve is refused here, before
        anything is bought."""
        response = await self._request("GET", MODELS_PATH)
        try:
            cards = ModelList.model_validate(response.json()).data
        except ValueError as exc:  # not JSON, or a pydantic ValidationError
            raise VendorError(f"{self.base_url}{MODELS_PATH} is not a vl2v model list: {exc}") from exc
        for card in cards:
            if card.id == self.model:
                return card.model_dump()
        served = ", ".join(repr(card.id) for card in cards) or "nothing"
        raise InvalidInput(
            f"model {self.model!r} is not served at {self.base_url}; it serves {served}", code="model_not_found"
        )

    def parse(self, payload: dict[str, Any], n: int) -> tuple[np.ndarray, dict[str, Any]]:
        reported = payload.get("model_revision")
        if self.revision is not None and reported != self.revision:
            raise ModelChanged(
                f"{self.base_url} now serves {self.model} revision {reported!r}, not {self.revision!r} as when "
                "this run started (the vendor swapped its weights); stopped so one run never mixes two models. "
                "Rerun to buy from the new revision (cached answers of the old one are kept apart)",
                code="model_revision_changed",
            )
        return super().parse(payload, n)

    def charged(self, usage: dict[str, Any], n: int) -> int:
        return EmbeddingUsage.model_validate(usage).queries if usage else n

    async def usage(self) -> dict[str, Any] | None:
        response = await self._retrying(self._request, "GET", USAGE_PATH)
        return KeyUsage.model_validate(response.json()).model_dump()
