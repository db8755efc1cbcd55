"""The vendor's wire protocol: pydantic models for requests, responses and errors.

This module is the *only* code the client and the vendor have in common about the API, so it is
deliberately free of server logic. The shapes follow OpenAI's ``/v1/embeddings`` (so the official
``openai`` SDK works unchanged) with Jina/infinity-style image items (``{"image": base64 | data URI}``).

Two extra fields name the *revision* of the served weights (a digest, see ``vendor_server.models``):
``revision`` on each ``/v1/models`` card and ``model_revision`` on every embeddings response. A model
name alone does not pin the weights (the vendor may be restarted with a retrained checkpoint), so a
client that caches embeddings keys them by both. Clients that do not know the fields ignore them.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/v1"
EMBEDDINGS_PATH = f"{API_PREFIX}/embeddings"
MODELS_PATH = f"{API_PREFIX}/models"
USAGE_PATH = f"{API_PREFIX}/usage"
IDEMPOTENCY_HEADER = "Idempotency-Key"
REQUEST_ID_HEADER = "X-Request-Id"


class TextItem(BaseModel):
    """A text input in the Jina item style."""

    model_config = ConfigDict(extra="forbid")
    text: str


class ImageItem(BaseModel):
    """An image input: raw base64 or a ``data:image/...;base64,`` URI of a PNG, JPEG or WebP file."""

    model_config = ConfigDict(extra="forbid")
    image: str


InputItem = str | TextItem | ImageItem


class EmbeddingRequest(BaseModel):
    """Body of ``POST /v1/embeddings``. Plain strings are texts (images when ``modality`` is
    ``"image"``, infinity's convention); one item is one paid query at the flat price.

    Unknown fields are refused rather than ignored: a client that asks for something the vendor
    does not do (a different ``dimensions``, say) must not be charged for an answer it did not ask for."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    input: str | Annotated[list[InputItem], Field(min_length=1, fail_fast=True)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        None, ge=1, description="must equal the model's embedding_dim (CLIP embeddings cannot be shortened)"
    )
    modality: Literal["text", "image"] | None = Field(
        None, description='infinity\'s extension: "image" makes plain-string items base64 images or data URIs'
    )
    user: str | None = Field(None, max_length=256, description="OpenAI's end-user id; accepted, not stored")
    embedding_type: Literal["float", "base64"] | None = Field(None, description="Jina's name for encoding_format")
    normalized: Literal[True] | None = Field(
        None, description="Jina's option; embeddings here are always L2-normalised"
    )

    def vector_format(self) -> Literal["float", "base64"]:
        """How to encode the vectors: Jina's ``embedding_type`` when given, else ``encoding_format``."""
        return self.embedding_type or self.encoding_format

    def items(self) -> list[InputItem]:
        """The input as a list (a bare string is a one-item list), plain strings read as images when
        ``modality`` says so."""
        items = [self.input] if isinstance(self.input, str) else list(self.input)
        if self.modality == "image":
            return [ImageItem(image=item) if isinstance(item, str) else item for item in items]
        return items


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Usage of one request. ``prompt_tokens``/``total_tokens`` exist for OpenAI SDK compatibility
    and equal ``queries``; ``remaining`` is the key's budget left after this request."""

    images: int = 0
    texts: int = 0
    queries: int = 0
    prompt_tokens: int = 0
    total_tokens: int = 0
    remaining: int | None = None


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    #: the weights that computed ``data``; an idempotent replay carries the revision of the original answer
    model_revision: str | None = None
    data: list[EmbeddingData]
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "vl2v-vendor"
    embedding_dim: int
    image_size: int
    price_per_query: float = Field(description="price of one input item, in the vendor's currency unit")
    modalities: list[str] = ["text", "image"]
    revision: str | None = Field(None, description="digest of the served weights; changes whenever they do")
    logit_scale: float | None = Field(
        None,
        description="the model's own logit scale (CLIP's is 100): zero-shot logits are logit_scale · cos(image, text)",
    )
    image_params: int | None = Field(
        None, description="parameters of the image tower, as a hosted model card states its size"
    )
    pixels_per_query: int = Field(
        0,
        description="0: an image costs one query whatever its size; N > 0: an image of w×h pixels costs "
        "ceil(w·h / N) queries (at least one)",
    )
    engine: str | None = Field(
        None, description="what runs the forward passes: torch, onnx (ONNX Runtime) or openvino (OpenVINO)"
    )
    precision: str | None = Field(
        None, description="their arithmetic: float32, or bf16 (float32 weights and accumulation, bf16 products)"
    )
    device: str | None = Field(None, description="where they run: cpu or cuda")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class KeyUsage(BaseModel):
    """``GET /v1/usage``: the calling key's own account, never another key's."""

    key_id: str
    name: str
    budget: int
    used: int
    remaining: int
    images: int
    texts: int
    requests: int
    revoked: bool = False
    rate_limit_qps: float | None = None


class ErrorDetail(BaseModel):
    type: str
    code: str
    message: str
    # budget details on 402, limits on 413 etc.; kept open so new codes need no protocol change
    model_config = ConfigDict(extra="allow")


class ErrorResponse(BaseModel):
    error: ErrorDetail


def image_queries(pixels: int, pixels_per_query: int) -> int:
    """The queries one image of ``pixels`` (declared) pixels costs under a card's ``pixels_per_query``:
    the vendor charges it, and a client reserves it before sending, so both compute it here."""
    if pixels_per_query <= 0:
        return 1
    return max(1, -(-pixels // pixels_per_query))


def encode_vector(vec: np.ndarray, encoding_format: str) -> list[float] | str:
    """Encode one embedding as OpenAI does: a float list or base64 of float32 little-endian bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
    return np.asarray(vec, dtype=np.float32).tolist()


def decode_vector(value: list[float] | str) -> np.ndarray:
    """Inverse of :func:`encode_vector`."""
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
    return np.asarray(value, dtype=np.float32)
