"""The client's disk cache, ledger and Teacher against a real loopback vendor (OpenAI wire format):
a paid answer is never paid again, the ledger survives reopening, budgets hold, partial purchases
are kept."""

from __future__ import annotations

import gc
import json
import signal

import numpy as np
import pytest
from fake_vendors import QUOTA, Script, png_bytes, serve

from client_distill.adapters.errors import BudgetExhausted
from client_distill.adapters.registry import create_adapter
from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.query_ledger import Ledger, ledger_totals
from client_distill.buy.settings import load_settings
from client_distill.buy.teacher import Teacher
from shared.cli import build_parser, run


def items_sent(script: Script) -> int:
    return sum(len(body["input"]) for _, body in script.requests)


@pytest.fixture()
def vendor():
    script = Script()
    with serve("openai", script) as url:
        yield script, url + "/v1"  # the openai adapter takes the URL as the OpenAI SDK does


def test_identical_bytes_are_paid_once_and_float16_is_faithful(vendor, tmp_path):
    script, url = vendor
    images = [png_bytes(i) for i in range(4)]
    with Teacher(create_adapter("openai", url, "k"), EmbeddingCache(tmp_path)) as teacher:
        first = teacher.embed_images(images + images[:1])  # a duplicate within the call
        second = teacher.embed_images(images)
        assert items_sent(script) == 4 and teacher.paid == 4 and teacher.hits == 4
    assert first.dtype == np.float32 and first.shape == (5, 8)
    cos = np.sum(first[:4] * second, axis=1)
    assert np.all(cos > 0.9999)  # float16 storage
    np.testing.assert_allclose(np.linalg.norm(second, axis=1), 1.0, atol=1e-6)


def test_cache_and_ledger_survive_reopening(vendor, tmp_path):
    script, url = vendor
    cache = EmbeddingCache(tmp_path)
    with Teacher(create_adapter("openai", url, "k"), cache) as teacher:
        teacher.embed_texts(["a photo of a dog", "a photo of a cat"])
    cache.close()
    reopened = EmbeddingCache(tmp_path)
    with Teacher(create_adapter("openai", url, "k"), reopened) as teacher:
        teacher.embed_texts(["a photo of a dog"])
        assert teacher.paid == 0 and teacher.hits == 1
    stats = reopened.stats()
    assert stats["entries"] == 2 and stats["hits"] == 1 and stats["misses"] == 2 and stats["size_bytes"] > 0
    assert ledger_totals(reopened) == {"paid": 2, "in_doubt": 0, "batches": 1}
    assert items_sent(script) == 2


def test_key_includes_model_and_modality(vendor, tmp_path):
    script, url = vendor
    cache = EmbeddingCache(tmp_path)
    with Teacher(create_adapter("openai", url, "k"), cache) as teacher:
        teacher.embed_texts(["x"])
    with Teacher(create_adapter("openai", url, "k", model="other-model"), cache) as teacher:
        teacher.embed_texts(["x"])
        assert teacher.paid == 1  # another model's vector is another entry
    assert items_sent(script) == 2


def test_online_mode_pays_every_call_but_merges_duplicates_within_one(vendor, tmp_path):
    script, url = vendor
    cache = EmbeddingCache(tmp_path)
    with Teacher(create_adapter("openai", url, "k"), cache, use_cache=False) as teacher:
        teacher.embed_texts(["a", "a", "b"])
        teacher.embed_texts(["a", "b", "c"])
        assert teacher.paid == 5
    assert items_sent(script) == 5
    assert cache.stats()["entries"] == 0
    assert ledger_totals(cache)["paid"] == 5


def test_vendor_budget_error_keeps_the_paid_batches_and_rerun_pays_the_rest(tmp_path):
    script = Script(errors=[QUOTA], succeed_first=1)
    texts = [f"prompt {i}" for i in range(6)]
    cache = EmbeddingCache(tmp_path)
    with serve("openai", script) as root:
        url = root + "/v1"
        with Teacher(create_adapter("openai", url, "k", batch_limit=2, concurrency=1), cache) as teacher:
            with pytest.raises(BudgetExhausted):
                teacher.embed_texts(texts)
            assert teacher.paid == 2 and teacher.reserved == 2  # the refused batch was released
        assert ledger_totals(cache) == {"paid": 2, "in_doubt": 0, "batches": 2}
        with Teacher(create_adapter("openai", url, "k", batch_limit=2, concurrency=1), cache) as teacher:
            teacher.embed_texts(texts)
            assert teacher.paid == 4 and teacher.hits == 2
    assert items_sent(script) == 2 + 2 + 4  # the refused batch was never charged, nothing paid twice


def test_ctrl_c_inside_a_batch_stops_cleanly_and_keeps_what_was_paid(vendor, tmp_path, caplog):
    """Ctrl-C that lands while a task of the event loop runs (not while it waits for the network) must
    cancel the call, not leave a task holding the interrupt to be logged as a traceback at exit."""
    script, url = vendor
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    notified = []

    def interrupt_on_the_first_paid_batch(teacher: Teacher) -> None:
        notified.append(teacher.paid)
        if teacher.paid == 2 and notified.count(2) == 1:
            signal.raise_signal(signal.SIGINT)  # inside the settle callback, in a task's step

    cache = EmbeddingCache(tmp_path)
    adapter = create_adapter("openai", url, "k", batch_limit=2, concurrency=1)
    try:
        with Teacher(adapter, cache, on_progress=interrupt_on_the_first_paid_batch) as teacher:
            with pytest.raises(KeyboardInterrupt):
                teacher.embed_texts([f"prompt {i}" for i in range(6)])
            assert teacher.paid == 2
    finally:
        signal.signal(signal.SIGINT, previous)
    gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"], "a task kept the interrupt"
    assert items_sent(script) == 2 and ledger_totals(cache) == {"paid": 2, "in_doubt": 0, "batches": 1}


def test_teacher_budget_is_never_exceeded(vendor, tmp_path):
    script, url = vendor
    with Teacher(
        create_adapter("openai", url, "k", batch_limit=2, concurrency=1), EmbeddingCache(tmp_path), budget=3
    ) as teacher:
        with pytest.raises(BudgetExhausted, match="budget of 3"):
            teacher.embed_texts(["a", "b", "c", "d"])
        assert teacher.reserved == 2
    assert items_sent(script) == 2


def test_a_send_whose_answer_was_lost_stays_in_doubt_until_settled(tmp_path):
    cache = EmbeddingCache(tmp_path)
    Ledger(cache, "acct", idempotent=True).reserve("batch-1", "image", 5)  # then the process "dies"
    cache.close()
    cache = EmbeddingCache(tmp_path)
    assert ledger_totals(cache) == {"paid": 0, "in_doubt": 5, "batches": 1}
    ledger = Ledger(cache, "acct", idempotent=True)
    ledger.reserve("batch-1", "image", 5)  # the rerun resends the same content ...
    ledger.settle("batch-1", 5, {"emb|k": np.ones(4, dtype=np.float32)}, "req-1")  # ... and the vendor replays it
    assert ledger_totals(cache) == {"paid": 5, "in_doubt": 0, "batches": 1}
    assert cache.get_many(["emb|k"])[0] is not None


def test_cache_stats_command(vendor, tmp_path, capsys):
    _, url = vendor
    cache = EmbeddingCache(tmp_path)
    with Teacher(create_adapter("openai", url, "k"), cache) as teacher:
        teacher.embed_texts(["a", "b"])
        teacher.embed_texts(["a"])
    cache.close()
    parser = build_parser("vl2v", None, ["client_distill.commands.cache"], load_settings())
    assert (
        run(
            parser,
            ["cache", "stats", "--cache", str(tmp_path), "--vendor", "openai", "--vendor-url", url, "--api-key", "k"],
            (),
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert (
        report["entries"] == 2
        and report["ledger"]["paid"] == 2
        and report["hit_rate"] == pytest.approx(1 / 3, abs=1e-3)
    )
    assert report["account_ledger"]["paid"] == 2 and report["vendor_usage"] is None  # OpenAI has no usage endpoint


@pytest.mark.parametrize(("made", "says"), [(False, "does not exist"), (True, "holds no embedding cache")])
def test_cache_stats_refuses_a_folder_that_is_no_cache_and_creates_nothing(tmp_path, capsys, made, says):
    """A mistyped --cache must not read as an empty cache (nor leave one behind)."""
    from client_distill.cli import main

    folder = tmp_path / "typo"
    if made:
        folder.mkdir()
    assert main(["cache", "stats", "--cache", str(folder)]) == 2
    assert capsys.readouterr().err == (
        f"vl2v: error: {folder} {says}: a cache is made by the first purchase through it (vl2v embed --cache)\n"
    )
    assert folder.exists() == made and (not made or not any(folder.iterdir()))
