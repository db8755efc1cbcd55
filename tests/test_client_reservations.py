"""The client's books when a request fails for good: a reservation the vendor provably did not charge
(429, 503, a refused connection) is released, also when the retries run out, so the ledger's *in
doubt* is only what may really have been billed (sent, answer lost), and a rerun settles that.

Every vendor here is a real server on 127.0.0.1: our own vendor with a rate-limited key, the scripted
fake of :mod:`fake_vendors` behind uvicorn, a port nobody listens on, and :class:`RawVendor`, a server
written on sockets for what a framework will not do: read a request whole and then never answer, or
drop the connection."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from conftest import ADMIN_TOKEN
from fake_vendors import Script, answer, model_list, serve

from client_distill.adapters.errors import TransientError
from client_distill.adapters.registry import create_adapter
from client_distill.buy.cache import EmbeddingCache
from client_distill.buy.local_vendor import free_port
from client_distill.buy.query_ledger import ledger_totals
from client_distill.buy.teacher import Teacher

TEXTS = ["a photo of a dog", "a photo of a cat", "a photo of a bird", "a photo of a fish"]
OVERLOADED = (503, {"error": {"message": "overloaded", "code": "overloaded"}}, {"Retry-After": "1"})
RATE_LIMITED = (429, {"error": {"message": "slow down", "code": "rate_limited"}}, {"Retry-After": "1"})


async def no_wait(seconds: float) -> None:
    """An adapter's ``sleep`` that does not wait: the retries run out at once."""


def buy(adapter, cache: EmbeddingCache, texts=TEXTS) -> Teacher:
    """Buy ``texts`` through a Teacher (ledger in ``cache``); the retries must run out. Returns the teacher."""
    with Teacher(adapter, cache) as teacher:
        with pytest.raises(TransientError):
            teacher.embed_texts(texts)
    return teacher


class RawVendor:
    """A loopback HTTP/1.1 server on plain sockets speaking ``flavour``'s wire format. It answers
    ``GET`` with the model list and each ``POST`` by the next of ``actions``: ``"hang"`` (read the
    request whole, never answer), ``"reset"`` (read it, then drop the connection with a TCP reset), an
    ``(status, body, headers)`` answer, or, when none is left, the embeddings."""

    def __init__(self, flavour: str, actions: list[Any]) -> None:
        self.flavour, self.actions, self.script = flavour, list(actions), Script()
        self.posts: list[dict[str, str]] = []  # the headers of each POST
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method = lines[0].split()[0]
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)):
            body += conn.recv(65536)
        if method == "GET":
            return self._send(conn, 200, model_list(self.flavour, self.script), {})
        self.posts.append(headers)
        action = self.actions.pop(0) if self.actions else None
        if action == "hang":
            self._held.append(conn)  # the request arrived whole; the answer never comes
        elif action == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        elif action is not None:
            self._send(conn, *action)
        else:
            self._send(conn, *answer(self.flavour, self.script, headers, json.loads(body)))

    @staticmethod
    def _send(conn: socket.socket, status: int, payload: Any, headers: dict[str, str]) -> None:
        content = json.dumps(payload).encode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(content)}\r\n"
            f"Connection: close\r\n{extra}\r\n".encode()
            + content
        )
        conn.close()

    @contextmanager
    def running(self) -> Iterator[RawVendor]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
            self._listener.close()
            for conn in self._held:
                conn.close()


# -- provably not charged: released, also when the retries run out -------------------------------------


def test_429_until_the_retries_run_out_leaves_nothing_in_doubt(vendor_server, tmp_path):
    """The issue's case: a key limited to 0.2 requests/s. The first batch takes the one token, the
    next is refused until the retries run out; the client's books then match the vendor's exactly."""
    with vendor_server.client(ADMIN_TOKEN) as admin:
        created = admin.post("/admin/keys", json={"name": "slow", "budget": 100, "rate_limit_qps": 0.2}).json()
    adapter = create_adapter(
        "vl2v", vendor_server.url, created["secret"], batch_limit=2, concurrency=1, max_attempts=3, sleep=no_wait
    )
    cache = EmbeddingCache(tmp_path)
    teacher = buy(adapter, cache)
    assert teacher.paid == 2 and teacher.reserved == 2  # the refused batch gave its reservation back
    with vendor_server.client(ADMIN_TOKEN) as admin:
        used = admin.get(f"/admin/keys/{created['key_id']}/usage").json()["used"]
    assert used == 2 and ledger_totals(cache) == {"paid": 2, "in_doubt": 0, "batches": 2}
    cache.close()


def test_503_until_the_retries_run_out_leaves_nothing_in_doubt(tmp_path):
    script = Script(errors=[OVERLOADED] * 3, succeed_first=1)
    cache = EmbeddingCache(tmp_path)
    with serve("vl2v", script) as url:
        adapter = create_adapter("vl2v", url, "k", batch_limit=2, concurrency=1, max_attempts=3, sleep=no_wait)
        teacher = buy(adapter, cache)
    assert len(script.requests) == 1 + 3 and teacher.paid == teacher.reserved == 2
    assert ledger_totals(cache) == {"paid": 2, "in_doubt": 0, "batches": 2}
    cache.close()


@pytest.mark.parametrize("flavour", ["openai", "vl2v"])
def test_a_refused_connection_leaves_nothing_in_doubt(flavour, tmp_path):
    """Nothing listens on the port: no send ever reached a vendor. (``model`` given: the openai
    adapter asks nothing on entry; the vl2v one reads its model card from a vendor that then goes.)"""
    cache = EmbeddingCache(tmp_path)
    if flavour == "openai":
        url = f"http://127.0.0.1:{free_port()}/v1"
        teacher = buy(create_adapter("openai", url, "k", model="m", max_attempts=3, sleep=no_wait), cache)
    else:
        vendor = RawVendor("vl2v", [])
        with vendor.running():
            adapter = create_adapter("vl2v", vendor.url, "k", max_attempts=3, sleep=no_wait)
            teacher = Teacher(adapter, cache)
            assert teacher.model == "vl2v-tiny"  # entered: the model card was read
        with teacher, pytest.raises(TransientError, match="cannot connect"):
            teacher.embed_texts(TEXTS)  # the vendor is gone now
        assert vendor.posts == []
    assert teacher.reserved == teacher.paid == 0
    assert ledger_totals(cache)["in_doubt"] == 0
    cache.close()


def test_giving_up_between_retries_releases_the_reservation(tmp_path):
    """Ctrl-C (a cancelled task) while waiting to retry a 429: that send was refused, nothing is out."""

    async def cancelled(seconds: float) -> None:
        raise asyncio.CancelledError

    cache = EmbeddingCache(tmp_path)
    with serve("vl2v", Script(errors=[RATE_LIMITED])) as url:
        with Teacher(create_adapter("vl2v", url, "k", sleep=cancelled), cache) as teacher:
            with pytest.raises(asyncio.CancelledError):
                teacher.embed_texts(TEXTS)
            assert teacher.reserved == 0
    assert ledger_totals(cache)["in_doubt"] == 0
    cache.close()


# -- maybe charged: in doubt until a rerun settles it ----------------------------------------------------


def test_a_lost_answer_stays_in_doubt_and_the_rerun_settles_it(tmp_path):
    """Our vendor's wire format (idempotent): the request arrives and no answer comes back, then a
    429. The first send may have been billed, so the batch stays in doubt, once; the rerun resends the
    same Idempotency-Key, the vendor answers (replays), and the books are settled."""
    cache = EmbeddingCache(tmp_path)
    vendor = RawVendor("vl2v", ["hang", RATE_LIMITED])
    with vendor.running():
        adapter = create_adapter("vl2v", vendor.url, "k", timeout_s=0.5, max_attempts=2, sleep=no_wait)
        teacher = buy(adapter, cache)
        assert teacher.reserved == len(TEXTS) and teacher.paid == 0
        assert ledger_totals(cache) == {"paid": 0, "in_doubt": len(TEXTS), "batches": 1}
        with Teacher(create_adapter("vl2v", vendor.url, "k"), cache) as rerun:
            rerun.embed_texts(TEXTS)
            assert rerun.paid == len(TEXTS)
    assert ledger_totals(cache) == {"paid": len(TEXTS), "in_doubt": 0, "batches": 1}
    assert len({h["idempotency-key"] for h in vendor.posts}) == 1 and len(vendor.posts) == 3
    cache.close()


@pytest.mark.parametrize("failure", ["hang", "reset"])
def test_without_idempotency_each_send_whose_answer_was_lost_stays_in_doubt(failure, tmp_path):
    """OpenAI's wire format (no idempotency): a read timeout or a reset after sending may each have
    been billed, so each send stays in doubt; the refused one after them (503) is released."""
    cache = EmbeddingCache(tmp_path)
    vendor = RawVendor("openai", [failure, failure, OVERLOADED])
    with vendor.running():
        adapter = create_adapter("openai", vendor.url, "k", model="m", timeout_s=0.5, max_attempts=3, sleep=no_wait)
        teacher = buy(adapter, cache)
    assert len(vendor.posts) == 3 and teacher.reserved == 2 * len(TEXTS)
    assert ledger_totals(cache) == {"paid": 0, "in_doubt": 2 * len(TEXTS), "batches": 1}
    cache.close()


def test_raw_vendor_answers_like_the_fake():
    """The socket server itself: a plain exchange in the openai wire format."""
    vendor = RawVendor("openai", [])
    with vendor.running():
        response = httpx.post(vendor.url + "/v1/embeddings", json={"model": "m", "input": ["x"]}, timeout=10)
    assert response.status_code == 200 and len(response.json()["data"]) == 1
