"""What the console tests share (tests/test_console.py over HTTP, tests/test_console_browser.py in
Chromium): a real vendor (or two replicas on one PostgreSQL ledger) with the console on, known traffic
sent through the real API, and the ledger's own numbers to compare the pages with.

:func:`send_traffic` produces a known mix of answers: per key ``200``s, a ``402`` (a request larger
than what is left), ``429``s (a key limited to 1 request/s sent a burst), a ``400`` and an unkeyed
``401``; the ``wide`` key's images are all different (a copier's spread), the ``narrow`` key's are the
same :data:`NARROW_IMAGES` images again and again (a customer's one domain)."""

from __future__ import annotations

import base64
import io
import re
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import numpy as np
from conftest import ADMIN_TOKEN
from PIL import Image

from vendor_server.ledger import SqlLedger
from vendor_server.ledger.reports import OUTCOMES, LedgerReports, outcome_of

#: distinct images of the narrow key
NARROW_IMAGES = 3
#: images per request
BATCH = 16


def noise_png(rng: np.random.Generator, size: int = 32) -> str:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class Traffic:
    """What :func:`send_traffic` sent: the keys' ids and the answers it got, by outcome (all, and per
    key id; ``""``: no key)."""

    wide: str
    narrow: str
    limited: str
    outcomes: Counter
    by_key: dict[str, Counter]

    @property
    def expected_outcomes(self) -> dict[str, int]:
        return {outcome: self.outcomes[outcome] for outcome in OUTCOMES}


def send_traffic(urls: list[str], ledger: SqlLedger, wide_requests: int = 20) -> Traffic:
    """Known traffic, spread over ``urls`` (replicas) round robin; see the module's docstring."""
    rng = np.random.default_rng(0)
    wide_budget = wide_requests * BATCH + BATCH // 2  # the last full batch does not fit: one 402
    wide, wide_secret = ledger.create_key("wide", wide_budget)
    narrow, narrow_secret = ledger.create_key("narrow", 10_000)
    limited, limited_secret = ledger.create_key("limited", 10_000, rate_limit_qps=1.0)
    outcomes: Counter = Counter()
    by_key: dict[str, Counter] = {"": Counter()}
    narrow_pool = [noise_png(rng) for _ in range(NARROW_IMAGES)]
    calls = 0

    def post(key: tuple[str, str] | None, body: dict) -> None:
        nonlocal calls
        url = urls[calls % len(urls)]
        calls += 1
        headers = {"Authorization": f"Bearer {key[1]}"} if key else {}
        outcome = outcome_of(httpx.post(f"{url}/v1/embeddings", json=body, headers=headers, timeout=60).status_code)
        outcomes[outcome] += 1
        by_key.setdefault(key[0] if key else "", Counter())[outcome] += 1

    for _ in range(wide_requests + 1):
        post((wide.id, wide_secret), {"input": [{"image": noise_png(rng)} for _ in range(BATCH)]})
    for i in range(wide_requests):
        images = [{"image": narrow_pool[(i + j) % NARROW_IMAGES]} for j in range(BATCH)]
        post((narrow.id, narrow_secret), {"input": images})
    for _ in range(4):  # a burst at a 1 request/s key: the first passes, the rest are limited
        post((limited.id, limited_secret), {"input": ["a photo of a cat"]})
    post((narrow.id, narrow_secret), {"input": []})  # 400
    post(None, {"input": ["no key"]})  # 401, counted without a key
    return Traffic(wide=wide.id, narrow=narrow.id, limited=limited.id, outcomes=outcomes, by_key=by_key)


def wait_for_outcomes(ledger: SqlLedger, expected: dict[str, int], timeout_s: float = 20.0) -> dict[str, int]:
    """The ledger's answer counts (all keys, all hours) once they equal ``expected`` (the replicas add
    theirs about once a second), or whatever they are at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = Counter()
        for by_outcome in LedgerReports(ledger).outcome_series(0).values():
            counts.update(by_outcome)
        found = {outcome: counts[outcome] for outcome in OUTCOMES}
        if found == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


class ConsoleClient:
    """An operator at ``/console`` over plain HTTP, signed in with the admin token."""

    def __init__(self, url: str, token: str = ADMIN_TOKEN) -> None:
        self.http = httpx.Client(base_url=url, headers={"Accept": "text/html"}, timeout=60)
        response = self.http.post("/console/login", data={"token": token})
        assert response.status_code == 303, response.text
        self.csrf = csrf_of(self.http.get("/console").text)

    def get(self, path: str) -> str:
        response = self.http.get(path)
        assert response.status_code == 200, response.text
        return response.text

    def post(self, path: str, **fields: str) -> httpx.Response:
        return self.http.post(path, data={"csrf": self.csrf, **fields})

    def close(self) -> None:
        self.http.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


def chart_values(html: str, section: str) -> dict[str, int]:
    """The values a chart (``<section id=section>``) draws, summed per series."""
    found = re.search(rf'<section class="chart" id="{section}">(.*?)</section>', html, re.S)
    assert found is not None, f"no chart {section}"
    totals: Counter = Counter()
    for series, value in re.findall(r'data-series="([^"]+)" data-value="(\d+)"', found.group(1)):
        totals[series] += int(value)
    return dict(totals)


def key_table(html: str) -> dict[str, dict[str, str]]:
    """The keys page's table: per key id, each cell by its class (name, budget, used, remaining, ...)."""
    rows = {}
    for key_id, body in re.findall(r'<tr class="state-\w+" data-key-id="([^"]+)">(.*?)</tr>', html, re.S):
        cells = dict(re.findall(r'<td class="[^"]*?(\w[\w-]*)">(.*?)</td>', body, re.S))
        rows[key_id] = {name: re.sub(r"<[^>]+>", "", value).strip() for name, value in cells.items()}
    return rows
