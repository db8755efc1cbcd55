"""The official ``openai`` SDK, unchanged, as a client of the vendor (it asks for base64 by default)."""

from __future__ import annotations

import numpy as np
import openai
import pytest


@pytest.fixture
def sdk(vendor_server):
    key = vendor_server.create_key(budget=20)
    with openai.OpenAI(api_key=key, base_url=vendor_server.url + "/v1", max_retries=0, timeout=60) as client:
        yield client


def test_sdk_embeddings_create_default_base64(sdk):
    result = sdk.embeddings.create(model="vl2v-tiny", input=["a photo of a fish", "a sketch of a house"])
    vectors = np.asarray([d.embedding for d in result.data], dtype=np.float32)
    assert vectors.shape[0] == 2 and vectors.shape[1] > 1
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert result.usage.total_tokens == result.usage.prompt_tokens == 2
    floats = sdk.embeddings.create(model="vl2v-tiny", input="a photo of a fish", encoding_format="float")
    np.testing.assert_allclose(floats.data[0].embedding, vectors[0], atol=1e-6)


def test_sdk_sees_vendor_errors(sdk):
    sdk.embeddings.create(model="vl2v-tiny", input=["x"] * 20)
    with pytest.raises(openai.APIStatusError) as exc:
        sdk.embeddings.create(model="vl2v-tiny", input=["one more"])
    assert exc.value.status_code == 402 and exc.value.body["code"] == "budget_exhausted"
    with pytest.raises(openai.NotFoundError):
        sdk.embeddings.create(model="text-embedding-3-small", input=["x"])
