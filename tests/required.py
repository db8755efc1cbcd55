"""Tests that need something from the distribution (PostgreSQL, Chromium) skip, saying what is missing,
where it is not installed, and fail instead where an environment variable says it must be there
(``.ci/run`` sets them), so CI cannot pass by skipping."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(reason: str, require_env: str) -> NoReturn:
    """Skip for ``reason``, or fail when ``require_env`` is ``1``."""
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{require_env}=1 but {reason}")
    pytest.skip(reason)
