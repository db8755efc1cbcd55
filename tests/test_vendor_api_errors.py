"""Every refusal of the ledger has its HTTP answer: status, machine-readable code, the ledger's message,
and (for a budget) the numbers. The real server's answers are checked end to end in test_vendor_api.py
and test_vendor_metering.py; this covers the mapping table itself, including cases a server rarely hits."""

from __future__ import annotations

import json

import pytest

from vendor_server.api_errors import from_ledger_error
from vendor_server.ledger import errors as ledger_errors


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ledger_errors.UnknownApiKey("invalid API key"), 401, "invalid_api_key"),
        (ledger_errors.KeyRevoked("API key key_1 has been revoked"), 403, "key_revoked"),
        (ledger_errors.KeyNotFound("no key 'key_1'"), 404, "key_not_found"),
        (ledger_errors.IdempotencyInProgress("still being processed"), 409, "idempotency_in_flight"),
        (ledger_errors.IdempotencyMismatch("different body"), 422, "idempotency_key_reused"),
        (ledger_errors.InvalidAmount("budget must be >= 0"), 400, "invalid_input"),
        (ledger_errors.LedgerUnavailable("cannot use x as the ledger"), 500, "internal_error"),
    ],
)
def test_each_ledger_error_maps_to_its_status_and_code(error, status, code):
    response = from_ledger_error(error).response()
    body = json.loads(response.body)["error"]
    assert (response.status_code, body["code"]) == (status, code)
    if status != 500:  # an operator's broken file is not described to API clients
        assert body["message"] == error.message


def test_budget_exceeded_carries_the_numbers_and_retry_after_only_where_retrying_helps():
    response = from_ledger_error(ledger_errors.BudgetExceeded(used=8, budget=10, requested=3)).response()
    body = json.loads(response.body)["error"]
    assert response.status_code == 402 and body["type"] == "insufficient_budget"
    assert (body["used"], body["budget"], body["remaining"], body["requested"]) == (8, 10, 2, 3)
    assert body["message"] == "this request needs 3 queries but the key has 2 left"
    assert "retry-after" not in response.headers
    assert from_ledger_error(ledger_errors.IdempotencyInProgress("wait")).response().headers["retry-after"] == "1"
