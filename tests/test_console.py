"""The operator console (``/console``) over HTTP against real vendors: on a SQLite ledger, and on a
PostgreSQL ledger shared by two replicas (the pages of one replica show the traffic both served).
What a browser does with the pages is tests/test_console_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ADMIN_TOKEN, VendorServer
from console_world import ConsoleClient, chart_values, key_table, send_traffic, wait_for_outcomes

from vendor_server.console.coverage import BITS, Partition
from vendor_server.ledger import open_ledger
from vendor_server.ledger.reports import LedgerReports, outcome_of

CONSOLE_ENV = {"VL2V_ADMIN_TOKEN": ADMIN_TOKEN}


@pytest.fixture(params=["sqlite", "postgres"])
def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[VendorServer]]:
    """One vendor on a SQLite ledger, or two on one PostgreSQL database."""
    if request.param == "sqlite":
        servers = [VendorServer(db=tmp_path / "ledger.sqlite3", log=tmp_path / "vendor.log", env=CONSOLE_ENV)]
    else:
        db = request.getfixturevalue("postgres_db")
        servers = [VendorServer(db=db, log=tmp_path / f"replica{i}.log", env=CONSOLE_ENV) for i in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.mark.slow
def test_the_pages_show_the_shared_ledger(replicas: list[VendorServer]) -> None:
    ledger = open_ledger(replicas[0].db)
    console = ConsoleClient(replicas[-1].url)
    try:
        traffic = send_traffic([server.url for server in replicas], ledger)
        assert wait_for_outcomes(ledger, traffic.expected_outcomes) == traffic.expected_outcomes
        assert traffic.outcomes["402"] == 1 and traffic.outcomes["429"] >= 1 and traffic.outcomes["4xx"] == 2

        # the keys table is the ledger's keys, number for number
        table = key_table(console.get("/console/keys"))
        records = {record.id: record for record in ledger.keys()}
        assert set(table) == set(records)
        for key_id, record in records.items():
            row = table[key_id]
            assert (row["name"], row["budget"], row["used"], row["remaining"]) == (
                record.name,
                f"{record.budget:,}",
                f"{record.used:,}",
                f"{record.remaining:,}",
            )
        assert table[traffic.wide]["state"] == "near"  # 320 of 328 used

        # the charts draw the ledger's events and the answers every replica counted
        overview = console.get("/console")
        assert chart_values(overview, "usage") == {"queries": sum(r.used for r in records.values())}
        drawn = chart_values(overview, "outcomes")
        assert {outcome: drawn.get(outcome, 0) for outcome in traffic.expected_outcomes} == traffic.expected_outcomes
        wide_page = console.get(f"/console/keys/{traffic.wide}?span=30d")
        assert chart_values(wide_page, "usage") == {"queries": records[traffic.wide].used}
        assert chart_values(wide_page, "outcomes") == dict(traffic.by_key[traffic.wide]) == {"200": 20, "402": 1}
        assert chart_values(wide_page, "growth")["new cells"] > 200

        # coverage: the key whose images are all different ranks first, the narrow one reached at most its 3
        # images' cells (fewer if two share one: on PostgreSQL, which replica's sample fits the partition varies)
        coverage = console.get("/console/coverage")
        ranked = re.findall(r'<tr data-key-id="([^"]+)">.*?<td class="num cells">([\d,]+)</td>', coverage, re.S)
        assert [key_id for key_id, _ in ranked] == [traffic.wide, traffic.narrow]
        assert int(ranked[0][1].replace(",", "")) > 200 and 1 <= int(ranked[1][1]) <= 3
    finally:
        console.close()
        ledger.close()


@pytest.mark.slow
def test_create_top_up_and_revoke_round_trip(vendor_server_factory) -> None:
    server = vendor_server_factory(**CONSOLE_ENV)
    console = ConsoleClient(server.url)
    ledger = open_ledger(server.db)
    try:
        created = console.post("/console/keys", name="<script>alert(1)</script>", budget="1,000", rate_limit_qps="2")
        assert created.status_code == 201
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in created.text and "<script>" not in created.text
        secret = re.search(r'id="new-secret">([^<]+)<', created.text).group(1)
        record = ledger.authenticate(secret)  # the secret shown is the key's
        assert (record.name, record.budget, record.rate_limit_qps) == ("<script>alert(1)</script>", 1000, 2.0)
        assert secret not in console.get("/console/keys")  # shown once

        topped = console.post(f"/console/keys/{record.id}/topup", queries="500", **{"from": "key"})
        assert (topped.status_code, topped.headers["location"]) == (303, f"/console/keys/{record.id}")
        assert ledger.key(record.id).budget == 1500
        assert console.post(f"/console/keys/{record.id}/revoke").headers["location"] == "/console/keys"
        assert ledger.key(record.id).revoked
        assert key_table(console.get("/console/keys"))[record.id]["state"] == "revoked"

        for fields, code in (
            ({"name": "x", "budget": "-1"}, "invalid_form"),
            ({"name": "", "budget": "1"}, "invalid_form"),
            ({"name": "x", "budget": "1", "rate_limit_qps": "fast"}, "invalid_form"),
        ):
            refused = console.post("/console/keys", **fields)
            assert (refused.status_code, _code(refused)) == (400, code)
        missing = console.post("/console/keys/key_nope/topup", queries="1")
        assert (missing.status_code, _code(missing)) == (404, "key_not_found")
        as_json = console.http.post("/console/keys", json={"csrf": console.csrf, "name": "x", "budget": 1})
        assert (as_json.status_code, _code(as_json)) == (415, "unsupported_media_type")
        huge = console.post("/console/keys", name="x" * 20_000, budget="1")
        assert (huge.status_code, _code(huge)) == (413, "payload_too_large")
        assert len(ledger.keys()) == 1
    finally:
        console.close()
        ledger.close()


@pytest.mark.slow
def test_nothing_without_a_session_and_no_cross_site_post(vendor_server_factory) -> None:
    server = vendor_server_factory(**CONSOLE_ENV)
    ledger = open_ledger(server.db)
    key = ledger.create_key("victim", 10)[0]
    pages = ("/console", "/console/keys", f"/console/keys/{key.id}", "/console/coverage")
    actions = ("/console/keys", f"/console/keys/{key.id}/topup", f"/console/keys/{key.id}/revoke", "/console/logout")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            for page in pages:
                answer = anonymous.get(page)
                assert (answer.status_code, answer.headers["location"]) == (303, "/console/login")
            for action in actions:
                answer = anonymous.post(action, data={"name": "x", "budget": "5", "queries": "5"})
                assert (answer.status_code, answer.json()["error"]["code"]) == (401, "console_login_required")
            wrong = anonymous.post("/console/login", data={"token": "guess"})
            assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_admin_token")
            assert "set-cookie" not in wrong.headers
            anonymous.cookies.set("vl2v_console", "v1.9999999999.abc.0000")  # forged: not signed with the token
            assert anonymous.get("/console").status_code == 303

        console = ConsoleClient(server.url)
        try:
            cookie = console.http.cookies.jar  # the session cookie's attributes
            (session,) = [c for c in cookie if c.name == "vl2v_console"]
            assert session.path == "/console" and session.has_nonstandard_attr("HttpOnly")
            assert session.get_nonstandard_attr("SameSite").lower() == "strict"
            page = console.http.get("/console/keys")
            assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none': no script
            cross = console.http.post(
                f"/console/keys/{key.id}/revoke", data={"csrf": console.csrf}, headers={"Origin": "http://evil.test"}
            )
            assert (cross.status_code, _code(cross)) == (403, "cross_site_request")
            no_token = console.http.post(f"/console/keys/{key.id}/topup", data={"queries": "5"})
            assert (no_token.status_code, _code(no_token)) == (403, "csrf_failed")
            other = ConsoleClient(server.url)  # another session's token is not this one's
            stolen = console.http.post(f"/console/keys/{key.id}/revoke", data={"csrf": other.csrf})
            other.close()
            assert (stolen.status_code, _code(stolen)) == (403, "csrf_failed")
            assert ledger.key(key.id) == key  # nothing changed

            assert console.post("/console/logout").headers["location"] == "/console/login"
            assert console.http.get("/console").status_code == 303
        finally:
            console.close()
    finally:
        ledger.close()


@pytest.mark.slow
def test_the_console_is_off_without_an_admin_token(vendor_server_factory) -> None:
    server = vendor_server_factory()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for answer in (
            client.get("/console"),
            client.get("/console/login"),
            client.post("/console/login"),
            client.get("/console/static/console.css"),
        ):
            assert (answer.status_code, answer.json()["error"]["code"]) == (404, "console_disabled")
        assert "/console" not in str(client.get("/openapi.json").json()["paths"])


def test_outcome_classes() -> None:
    assert [outcome_of(s) for s in (200, 201, 400, 401, 402, 403, 429, 500, 503)] == [
        "200",
        "200",
        "4xx",
        "4xx",
        "402",
        "4xx",
        "429",
        "5xx",
        "5xx",
    ]


def test_the_partition_halves_its_sample_and_bins_alike_everywhere() -> None:
    rng = np.random.default_rng(1)
    sample = rng.normal(size=(256, 32)).astype(np.float32) + 3.0  # a cone away from the origin, as CLIP's
    fitted = Partition.fit(sample)
    sides = (sample @ fitted.planes) > fitted.thresholds
    assert np.all(np.abs(sides.mean(axis=0) - 0.5) <= 1 / 256)
    again = Partition(fitted.seed, 32, fitted.thresholds)  # what another replica builds from the ledger's row
    cells = fitted.cells(sample)
    assert np.array_equal(again.cells(sample), cells) and cells.max() < 2**BITS
    assert len(set(cells.tolist())) > 200  # a spread sample reaches many cells


def test_counts_add_up_in_the_ledger_and_one_partition_is_kept(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "ledger.sqlite3")
    reports = LedgerReports(ledger)
    try:
        reports.add({(10, "k", "200"): 2}, {("k", 5): (3, 100.0)})
        reports.add({(10, "k", "200"): 1, (11, "", "4xx"): 1}, {("k", 5): (1, 200.0), ("k", 6): (1, 200.0)})
        assert reports.outcome_series(0) == {10: {"200": 3}, 11: {"4xx": 1}}
        ranked, total = reports.coverage(recent_since=150.0)
        assert [(c.key_id, c.cells, c.images, c.new_cells) for c in ranked] == [("k", 2, 5, 1)]
        assert total == 2
        assert reports.store_partition(1, 2, [0.5]) == (1, 2, [0.5])
        assert reports.store_partition(9, 2, [0.1]) == (1, 2, [0.5])  # the first one stays
    finally:
        ledger.close()


def _code(response: httpx.Response) -> str:
    """The machine-readable code of a refusal rendered as a page."""
    found = re.search(r'data-code="([^"]+)"', response.text)
    assert found is not None, response.text
    return found.group(1)
