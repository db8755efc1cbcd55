"""Errors of the vendor's command line (the HTTP API's errors are in :mod:`vendor_server.api_errors`,
the ledger's in :mod:`vendor_server.ledger.errors`)."""


class VendorCliError(Exception):
    """A user error on the command line: printed as one line, exit status 2."""
