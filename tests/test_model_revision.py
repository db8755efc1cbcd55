"""The served weights' revision, against REAL vendors (uvicorn, SQLite) on loopback: ``/v1/models`` and
every answer name it, two vendors serving other weights under the same model name never share cache
entries, and a vendor restarted with other weights in the middle of a run stops the run clearly
instead of mixing two models."""

from __future__ import annotations

import re
import sys

import pytest

from client_distill.adapters.errors import InvalidInput, ModelChanged
from client_distill.adapters.registry import create_adapter
from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.teacher import Teacher
from vendor_server import models

TEXTS = ["a photo of a dog", "a photo of a cat", "a sketch of a horse"]


@pytest.fixture(scope="module")
def vendors(vendor_server_factory, vl2v_checkpoint):
    """Two vendors serving ``vl2v-tiny``, each with other weights."""
    return (
        vendor_server_factory(pretrained=str(vl2v_checkpoint(1))),
        vendor_server_factory(pretrained=str(vl2v_checkpoint(2))),
    )


def card(server) -> dict:
    with server.client() as client:
        return client.get("/v1/models").json()["data"][0]


def teacher(server, cache: EmbeddingCache, **kwargs) -> Teacher:
    return Teacher(create_adapter("vl2v", server.url, server.create_key(), **kwargs), cache)


def test_models_and_answers_name_the_served_weights(vendors, vl2v_checkpoint):
    a, b = card(vendors[0]), card(vendors[1])
    assert a["id"] == b["id"] == "vl2v-tiny" and a["object"] == "model"  # still OpenAI's model object
    assert re.fullmatch("[0-9a-f]{12}", a["revision"]) and a["revision"] != b["revision"]
    # a digest of the weights as loaded (not of the file: the fp16 checkpoint is served as fp32)
    loaded = models.create("vl2v-tiny", str(vl2v_checkpoint(1)))[0]
    assert a["revision"] == models.weights_revision(loaded)
    with vendors[0].client(vendors[0].create_key()) as client:
        answer = client.post("/v1/embeddings", json={"input": ["x"]}).json()
    assert answer["model"] == "vl2v-tiny" and answer["model_revision"] == a["revision"]


def test_other_weights_under_the_same_name_are_cache_misses(vendors, tmp_path):
    cache = EmbeddingCache(tmp_path)
    with teacher(vendors[0], cache) as first:
        vectors_a = first.embed_texts(TEXTS)
        assert (first.paid, first.hits) == (3, 0)
    with teacher(vendors[1], cache) as other:
        vectors_b = other.embed_texts(TEXTS)
        assert (other.paid, other.hits) == (3, 0)  # same name, same inputs, other weights: bought again
    assert abs(vectors_a - vectors_b).max() > 0.01
    with teacher(vendors[0], cache) as again:
        assert (abs(again.embed_texts(TEXTS) - vectors_a).max() < 1e-2) and (again.paid, again.hits) == (0, 3)
    assert cache.stats()["entries"] == 6
    cache.close()


def test_an_unserved_model_is_refused_before_anything_is_bought(vendors, tmp_path):
    cache = EmbeddingCache(tmp_path)
    with (
        teacher(vendors[0], cache, model="ViT-B-32") as wrong,
        pytest.raises(InvalidInput, match="not served.*'vl2v-tiny'"),
    ):
        wrong.embed_texts(TEXTS)
    cache.close()


def test_weights_swapped_mid_run_stop_the_run(vendor_server_factory, vl2v_checkpoint, monkeypatch, tmp_path):
    server = vendor_server_factory(pretrained=str(vl2v_checkpoint(3)))
    old = card(server)["revision"]
    cache = EmbeddingCache(tmp_path)
    run = teacher(server, cache)
    run.embed_texts(TEXTS[:2])
    # a redeploy behind the same address: same ledger, same port, same model name, retrained weights
    server.stop()
    port = server.port
    monkeypatch.setattr(sys.modules[type(server).__module__], "free_port", lambda: port)
    server.pretrained = str(vl2v_checkpoint(4))
    server.start()
    new = card(server)["revision"]
    assert new != old
    with pytest.raises(ModelChanged, match=f"revision '{new}', not '{old}'"):
        run.embed_texts(TEXTS)  # two hits, then one input the swapped vendor answers
    kept = run.cached("text", TEXTS)
    assert kept[0] is not None and kept[1] is not None and kept[2] is None  # nothing of the new model kept
    run.close()
    with teacher(server, cache) as rerun:  # a rerun starts on the new revision: its own entries
        rerun.embed_texts(TEXTS)
        assert (rerun.paid, rerun.hits) == (3, 0)
    cache.close()
