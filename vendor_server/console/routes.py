"""``/console``: the operator's pages, served by the vendor itself from its ledger (no other service).

Off (404, ``console_disabled``) unless ``VL2V_ADMIN_TOKEN`` is set; signed in with that token
(:mod:`vendor_server.console.session`). Pages: the overview (``/console``), the keys
(``/console/keys``, with create, top-up and revoke), one key (``/console/keys/{id}``) and extraction
coverage (``/console/coverage``). Every figure is read from the ledger at view time, so every replica
shows the same numbers.

Refusals are the API's errors (:mod:`vendor_server.api_errors`), status and machine-readable code
alike; a browser (``Accept: text/html``) gets them as a page that names the code, anything else as
the usual JSON. A page asked for without a session answers 303 to the sign-in form."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qsl

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from shared.protocol import ModelCard
from vendor_server.api_errors import (
    ApiError,
    InvalidInput,
    NotFound,
    UnsupportedMediaType,
    from_ledger_error,
    validation_message,
)
from vendor_server.auth import client_bucket
from vendor_server.console.charts import stacked_bars
from vendor_server.console.coverage import BITS
from vendor_server.console.session import (
    SESSION_S,
    LoginRequired,
    Session,
    check_csrf,
    cookie_options,
    new_session,
    read_session,
    refuse_cross_site,
    token_matches,
)
from vendor_server.deps import CardDep, LedgerDep, ServiceDep, SettingsDep
from vendor_server.ledger import KeyRecord, SqlLedger
from vendor_server.ledger.errors import LedgerError
from vendor_server.ledger.reports import OUTCOMES, KeyCoverage, LedgerReports
from vendor_server.routes.admin import CreateKey, TopUp
from vendor_server.routes.embeddings import read_body

#: a key at or past this share of its budget is flagged
NEAR_BUDGET = 0.9
#: the time spans a page can show: bucket seconds and buckets
SPANS = {"48h": (3600, 48), "30d": (86400, 30)}
#: cells first reached this recently count as the coverage's growth
GROWTH_S = 24 * 3600
#: the largest form body accepted (the forms hold a few short fields)
FORM_BYTES = 16 * 1024
FORM_FIELDS = 20
#: sign-in attempts per second per client address
LOGIN_QPS = 1.0
OUTCOME_COLORS = {"200": "#2e7d32", "402": "#f9a825", "429": "#6a1b9a", "4xx": "#1565c0", "5xx": "#c62828"}
#: no script runs on these pages, nothing is fetched from elsewhere, and no other site may frame them
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("vendor_server.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


class ConsoleRoute(APIRoute):
    """A route whose refusals a browser sees as a page (with the error's status, code and headers)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except (ApiError, LedgerError) as exc:
                error = exc if isinstance(exc, ApiError) else from_ledger_error(exc)
                if "text/html" not in request.headers.get("accept", ""):
                    raise error from None
                page = _page("error.html", request, None, error=error, title=f"{error.status}")
                page.status_code = error.status
                page.headers.update(error.headers)
                return page

        return console_handler


async def admin_token(settings: SettingsDep) -> str:
    if not settings.admin_token:
        raise NotFound("the console is disabled (set VL2V_ADMIN_TOKEN to enable it)", code="console_disabled")
    return settings.admin_token


AdminToken = Annotated[str, Depends(admin_token)]


async def signed_in(request: Request, token: AdminToken) -> Session:
    """The session; for a POST also refuses another origin's request and a missing or wrong CSRF token."""
    if request.method != "GET":
        refuse_cross_site(request)
    session = read_session(request, token)
    if session is None:
        if request.method == "GET":
            error = LoginRequired("sign in first", headers={"Location": "/console/login"})
            error.status = 303
            raise error
        raise LoginRequired("sign in first: this console session is missing or expired")
    if request.method != "GET":
        check_csrf(session, (await _form(request)).get("csrf"))
    return session


SignedIn = Annotated[Session, Depends(signed_in)]

router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


# --- signing in -------------------------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, token: AdminToken) -> Response:
    if read_session(request, token) is not None:
        return _redirect("/console")
    return _page("login.html", request, None, title="Sign in")


@router.post("/login")
async def login(request: Request, token: AdminToken, service: ServiceDep) -> Response:
    refuse_cross_site(request)
    given = (await _form(request)).get("token", "")
    if not token_matches(given, token):
        service.limiter.hit("console:" + client_bucket(request), LOGIN_QPS)  # guessing is slow
        raise LoginRequired("wrong admin token", code="invalid_admin_token")
    _, cookie = new_session(token)
    response = _redirect("/console")
    response.set_cookie(value=cookie, max_age=SESSION_S, **cookie_options(request))  # type: ignore[arg-type]
    return response


@router.post("/logout")
async def logout(request: Request, session: SignedIn) -> Response:
    response = _redirect("/console/login")
    response.delete_cookie(**cookie_options(request))  # type: ignore[arg-type]
    return response


@router.get("/static/console.css", dependencies=[Depends(admin_token)])
async def stylesheet() -> Response:
    css = resources.files("vendor_server.console").joinpath("static", "console.css").read_text()
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


# --- pages ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    """One key as the console lists it."""

    record: KeyRecord
    spend: float
    last_use: float | None
    #: answers in the span, by outcome
    outcomes: Mapping[str, int]
    coverage: KeyCoverage | None

    @property
    def state(self) -> str:
        """``revoked``, ``exhausted`` (nothing left), ``near`` (past :data:`NEAR_BUDGET`) or ``ok``."""
        record = self.record
        if record.revoked:
            return "revoked"
        if record.remaining <= 0:
            return "exhausted"
        return "near" if record.used >= NEAR_BUDGET * record.budget else "ok"


@router.get("")
async def overview(
    request: Request, session: SignedIn, ledger: LedgerDep, card: CardDep, span: str = "48h"
) -> Response:
    bucket_s, n = _span(span)

    def gather() -> dict[str, Any]:
        reports = LedgerReports(ledger)
        rows = _key_rows(ledger, reports, card)
        return {
            "rows": rows,
            "attention": [row for row in rows if row.state in ("near", "exhausted")],
            "spend": sum(row.spend for row in rows),
            "used": sum(row.record.used for row in rows),
            "usage_chart": _usage_chart(reports, bucket_s, n, None),
            "outcome_chart": _outcome_chart(reports, bucket_s, n, None),
        }

    return _page("overview.html", request, session, title="Overview", span=span, card=card, **await _run(gather))


@router.get("/keys")
async def keys_page(request: Request, session: SignedIn, ledger: LedgerDep, card: CardDep) -> Response:
    rows = await _run(lambda: _key_rows(ledger, LedgerReports(ledger), card))
    return _page("keys.html", request, session, title="Keys", rows=rows, card=card, created=None, secret=None)


@router.post("/keys")
async def create_key(request: Request, session: SignedIn, ledger: LedgerDep, card: CardDep) -> Response:
    form = await _form(request)
    body = _validated(
        CreateKey,
        name=form.get("name", "").strip(),
        budget=_integer(form, "budget"),
        rate_limit_qps=form.get("rate_limit_qps", "").strip() or None,
    )

    def create() -> tuple[KeyRecord, str, list[KeyRow]]:
        record, secret = ledger.create_key(body.name, body.budget, body.rate_limit_qps)
        return record, secret, _key_rows(ledger, LedgerReports(ledger), card)

    record, secret, rows = await _run(create)
    # the secret is shown once, in this answer (never in a URL), and never stored
    return _page(
        "keys.html", request, session, title="Keys", rows=rows, card=card, created=record, secret=secret, status=201
    )


@router.post("/keys/{key_id}/topup")
async def topup(request: Request, key_id: str, session: SignedIn, ledger: LedgerDep) -> Response:
    form = await _form(request)
    body = _validated(TopUp, queries=_integer(form, "queries"))
    await asyncio.to_thread(ledger.topup, key_id, body.queries)
    return _redirect(_back(form, key_id))


@router.post("/keys/{key_id}/revoke")
async def revoke(request: Request, key_id: str, session: SignedIn, ledger: LedgerDep) -> Response:
    await asyncio.to_thread(ledger.revoke, key_id)
    return _redirect(_back(await _form(request), key_id))


@router.get("/keys/{key_id}")
async def key_page(
    request: Request, key_id: str, session: SignedIn, ledger: LedgerDep, card: CardDep, span: str = "48h"
) -> Response:
    bucket_s, n = _span(span)

    def gather() -> dict[str, Any]:
        reports = LedgerReports(ledger)
        ledger.key(key_id)  # KeyNotFound: 404
        row = next(row for row in _key_rows(ledger, reports, card) if row.record.id == key_id)
        growth = reports.coverage_growth(key_id, bucket_s)
        first = int(time.time() // bucket_s) - n + 1
        return {
            "row": row,
            "usage_chart": _usage_chart(reports, bucket_s, n, key_id),
            "outcome_chart": _outcome_chart(reports, bucket_s, n, key_id),
            "growth_chart": stacked_bars(
                _labels(bucket_s, first, n),
                {"new cells": [growth.get(first + i, 0) for i in range(n)]},
                {"new cells": "#00838f"},
                f"cells of the embedding space reached for the first time, per {_unit(bucket_s)}",
            ),
        }

    data = await _run(gather)
    return _page("key.html", request, session, title=data["row"].record.name, span=span, card=card, **data)


@router.get("/coverage")
async def coverage_page(request: Request, session: SignedIn, ledger: LedgerDep, settings: SettingsDep) -> Response:
    def gather() -> dict[str, Any]:
        ranked, total = LedgerReports(ledger).coverage(time.time() - GROWTH_S)
        names = {record.id: record for record in ledger.keys()}
        return {"ranked": [(names[c.key_id], c) for c in ranked if c.key_id in names], "total": total}

    data = await _run(gather)
    return _page(
        "coverage.html", request, session, title="Extraction coverage", cells=2**BITS, on=settings.coverage, **data
    )


# --- what the pages show ----------------------------------------------------------------------------


def _key_rows(ledger: SqlLedger, reports: LedgerReports, card: ModelCard) -> list[KeyRow]:
    since_hour = int(time.time() // 3600) - SPANS["48h"][1] + 1
    last_use = reports.last_use()
    outcomes = reports.outcomes_by_key(since_hour)
    coverage = {c.key_id: c for c in reports.coverage(time.time() - GROWTH_S)[0]}
    return [
        KeyRow(
            record=record,
            spend=record.used * card.price_per_query,
            last_use=last_use.get(record.id),
            outcomes=outcomes.get(record.id, {}),
            coverage=coverage.get(record.id),
        )
        for record in ledger.keys()
    ]


def _usage_chart(reports: LedgerReports, bucket_s: int, n: int, key_id: str | None) -> Any:
    first = int(time.time() // bucket_s) - n + 1
    usage = reports.usage_series(first * bucket_s, bucket_s, key_id)
    return stacked_bars(
        _labels(bucket_s, first, n),
        {"queries": [usage.get(first + i, (0, 0))[0] for i in range(n)]},
        {"queries": "#37474f"},
        f"queries charged per {_unit(bucket_s)}",
    )


def _outcome_chart(reports: LedgerReports, bucket_s: int, n: int, key_id: str | None) -> Any:
    first = int(time.time() // bucket_s) - n + 1
    series = {outcome: [0] * n for outcome in OUTCOMES}
    for hour, counts in reports.outcome_series(first * bucket_s // 3600, key_id).items():
        index = hour * 3600 // bucket_s - first
        if 0 <= index < n:
            for outcome, requests in counts.items():
                series[outcome][index] += requests
    return stacked_bars(
        _labels(bucket_s, first, n), series, OUTCOME_COLORS, f"API answers per {_unit(bucket_s)}, by outcome"
    )


def _labels(bucket_s: int, first: int, n: int) -> list[str]:
    style = "%d %H:00" if bucket_s < 86400 else "%m-%d"
    return [
        datetime.datetime.fromtimestamp((first + i) * bucket_s, datetime.timezone.utc).strftime(style) for i in range(n)
    ]


def _unit(bucket_s: int) -> str:
    return "hour (UTC)" if bucket_s < 86400 else "day (UTC)"


def _span(span: str) -> tuple[int, int]:
    if span not in SPANS:
        raise InvalidInput(f"span must be one of {', '.join(SPANS)}", code="invalid_span")
    return SPANS[span]


# --- plumbing ---------------------------------------------------------------------------------------


def _page(template: str, request: Request, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(
        session=session, path=request.url.path, when=_when, money=_money, **context
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


async def _run(gather: Callable[[], Any]) -> Any:
    """A page's ledger reads, off the event loop."""
    return await asyncio.to_thread(gather)


def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def _back(form: Mapping[str, str], key_id: str) -> str:
    """Where a key's form returns: its own page when sent from there, else the keys page."""
    return f"/console/keys/{key_id}" if form.get("from") == "key" else "/console/keys"


async def _form(request: Request) -> dict[str, str]:
    """The request's form (``application/x-www-form-urlencoded``, what the pages' forms send), read once
    and kept for the route after its dependencies; a body over :data:`FORM_BYTES` is refused (413)
    before it is all read, any other content type too (415)."""
    form = getattr(request.state, "console_form", None)
    if form is None:
        content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType(
                f"send the form as application/x-www-form-urlencoded, not {content_type or '(none)'!r}"
            )
        body = await read_body(request, FORM_BYTES)
        try:
            form = dict(parse_qsl(body.decode("utf-8", "replace"), max_num_fields=FORM_FIELDS))
        except ValueError:
            raise InvalidInput(f"a console form has at most {FORM_FIELDS} fields", code="invalid_form") from None
        request.state.console_form = form
    return form


def _integer(form: Mapping[str, str], name: str) -> int | str | None:
    """A whole-number field as an int; anything else as it came, for the model to refuse with its message."""
    value = form.get(name, "").strip().replace("_", "").replace(",", "")
    return int(value) if value.isdigit() else form.get(name)


def _validated(model: type[Any], **fields: Any) -> Any:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc.errors()), code="invalid_form") from None


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _money(amount: float) -> str:
    return f"{amount:,.2f}" if amount >= 100 else f"{amount:,.4f}"
