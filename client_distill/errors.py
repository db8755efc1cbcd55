"""Exceptions the client raises. The CLI turns any :class:`Vl2vError` into a one-line message."""


class Vl2vError(Exception):
    """Base of every error the CLI reports as a plain message instead of a traceback."""


class UsageError(Vl2vError):
    """Bad arguments, a wrong folder layout, a missing file: the user can fix it."""
