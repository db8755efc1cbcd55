"""``GET /v1/models``: the one model served, with the revision of its weights (free, no key needed)."""

from __future__ import annotations

from fastapi import APIRouter

from shared.protocol import MODELS_PATH, ModelList
from vendor_server.deps import CardDep

router = APIRouter()


@router.get(MODELS_PATH, response_model=ModelList)
async def models(card: CardDep) -> ModelList:
    return ModelList(data=[card])
