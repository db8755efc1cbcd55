"""Who may use the console: the admin token, exchanged once at sign-in for a session cookie.

The session is a signed cookie (``v1.<expires>.<nonce>.<signature>``, HMAC-SHA256 under a key derived
from the admin token), so every replica given the same token accepts it without shared session state,
and changing the token signs everyone out. It is ``HttpOnly`` (no script reads it), ``SameSite=Strict``
(no other site's page sends it), ``Path=/console``, and ``Secure`` when the console is reached over
HTTPS; it lasts :data:`SESSION_S`.

Cross-site requests: every state-changing form carries a CSRF token bound to the session's nonce,
checked on every POST, and a POST whose ``Origin`` (or ``Sec-Fetch-Site``) names another origin is
refused before anything else, sign-in included (a forged sign-in would put the operator into an
attacker's session)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request

from vendor_server.api_errors import ApiError, Forbidden

COOKIE = "vl2v_console"
SESSION_S = 8 * 3600


class LoginRequired(ApiError):
    """No valid session: a page sends the browser to the sign-in form (303), a form post is refused."""

    status, type, code = 401, "authentication_error", "console_login_required"


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int
    #: the CSRF token every form of this session carries
    csrf: str


def _key(admin_token: str) -> bytes:
    return hmac.new(admin_token.encode(), b"vl2v console session", hashlib.sha256).digest()


def _sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def token_matches(given: str, admin_token: str) -> bool:
    return hmac.compare_digest(given.encode(), admin_token.encode())


def new_session(admin_token: str) -> tuple[Session, str]:
    """A fresh session and its cookie value."""
    expires, nonce = int(time.time()) + SESSION_S, secrets.token_urlsafe(16)
    payload = f"v1.{expires}.{nonce}"
    return _session(admin_token, nonce, expires), f"{payload}.{_sign(_key(admin_token), payload)}"


def read_session(request: Request, admin_token: str) -> Session | None:
    """The request's session, if its cookie is one this token signed and it has not expired."""
    version, _, rest = request.cookies.get(COOKIE, "").partition(".")
    expires, _, rest = rest.partition(".")
    nonce, _, signature = rest.partition(".")
    if version != "v1" or not expires.isdigit() or not nonce:
        return None
    if not hmac.compare_digest(signature, _sign(_key(admin_token), f"v1.{expires}.{nonce}")):
        return None
    if int(expires) < time.time():
        return None
    return _session(admin_token, nonce, int(expires))


def _session(admin_token: str, nonce: str, expires: int) -> Session:
    return Session(nonce=nonce, expires=expires, csrf=_sign(_key(admin_token), "csrf." + nonce))


def refuse_cross_site(request: Request) -> None:
    """403 for a POST another origin's page made (``Origin`` or the browser's ``Sec-Fetch-Site``)."""
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    fetch_site = request.headers.get("sec-fetch-site")
    if (origin is not None and origin != own) or fetch_site not in (None, "same-origin", "none"):
        raise Forbidden("cross-site requests to the console are refused", code="cross_site_request")


def check_csrf(session: Session, submitted: str | None) -> None:
    if submitted is None or not hmac.compare_digest(submitted, session.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong; reload the page", code="csrf_failed")


def cookie_options(request: Request) -> dict[str, object]:
    """The session cookie's attributes (see the module's docstring)."""
    return {
        "key": COOKIE,
        "httponly": True,
        "samesite": "strict",
        "path": "/console",
        "secure": request.url.scheme == "https",
    }
