"""Helpers for tests that interrupt a real subprocess."""

from __future__ import annotations

import signal


def default_sigint() -> None:
    """``preexec_fn`` for a child that a test will Ctrl-C: a shell starts background jobs with SIGINT
    *ignored*, children inherit that, and Python then installs no KeyboardInterrupt handler, so a test
    run from such a job (``make test &``, CI wrappers) would see the child ignore the signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
