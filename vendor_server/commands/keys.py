"""``vl2v-vendor keys``: create, list, revoke, top up and inspect API keys in the ledger directly
(the same operations as ``/admin/keys``, for a vendor with shell access)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vendor_server.errors import VendorCliError

KEY_ID_HELP = "the key's id, as `keys list` shows it (not its secret)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="manage API keys and budgets")
    sub = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    def action(name: str, help_: str, func) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_)
        q.add_argument(
            "--db",
            help="SQLite ledger or postgresql:// URL (default: VL2V_VENDOR_DB, VL2V_DB or ./vl2v-vendor.sqlite3)",
        )
        q.set_defaults(func=func)
        return q

    q = action("create", "create a key; prints only its secret", _create)
    q.add_argument("--name", required=True, help="a label for the key's owner, shown by `keys list`")
    q.add_argument("--budget", type=int, required=True, help="queries (input items) the key may buy")
    q.add_argument("--rate-limit", type=float, help="requests per second (default: the server's)")
    action("list", "list keys with budget and usage", _list)
    for name, help_, func in (
        ("revoke", "revoke a key (it stops working at once)", _revoke),
        ("usage", "one key's usage as JSON", _usage),
    ):
        action(name, help_, func).add_argument("key_id", help=KEY_ID_HELP)
    q = action("topup", "add queries to a key's budget", _topup)
    q.add_argument("key_id", help=KEY_ID_HELP)
    q.add_argument("--queries", type=int, required=True, help="queries (input items) to add to the budget")


def _ledger(args: argparse.Namespace):
    """The ledger at ``--db``; only ``keys create`` may start a new one (a typo in the path of
    ``keys list`` must not quietly show an empty, freshly created ledger)."""
    from vendor_server.ledger import is_postgres_url, open_ledger
    from vendor_server.settings import load_settings

    db = args.db or load_settings().db
    # only a path where nothing is gets the advice to create a ledger there: a folder or another file
    # is refused by open_ledger, as `keys create` would refuse it
    if not is_postgres_url(db) and args.func is not _create and not Path(db).exists():
        raise VendorCliError(f"no ledger at {db}; create a key first with `vl2v-vendor keys create --db {db} ...`")
    return open_ledger(db)


def _call(args: argparse.Namespace, op):
    """Run ``op(ledger)`` on the ledger at ``--db`` and close it; its refusals (an unknown key, a bad
    budget) are :class:`~vendor_server.ledger.errors.LedgerError`, which the CLI prints as one line."""
    ledger = _ledger(args)
    try:
        return op(ledger)
    finally:
        ledger.close()


def _queries(flag: str, value: int, minimum: int) -> None:
    """Refuse a query count the ledger would refuse, before the ledger is opened (or created)."""
    from vendor_server.ledger import MAX_BUDGET

    if not minimum <= value <= MAX_BUDGET:
        raise VendorCliError(f"{flag} is a number of queries between {minimum} and {MAX_BUDGET}, got {value}")


def _create(args: argparse.Namespace) -> None:
    _queries("--budget", args.budget, 0)
    _, secret = _call(args, lambda ledger: ledger.create_key(args.name, args.budget, args.rate_limit))
    print(secret)


def _list(args: argparse.Namespace) -> None:
    keys = _call(args, lambda ledger: ledger.keys())
    print(f"{'id':<22} {'name':<20} {'budget':>10} {'used':>10} {'remaining':>10} {'qps':>8}  revoked")
    for k in keys:
        qps = f"{k.rate_limit_qps:g}" if k.rate_limit_qps else "default"
        print(
            f"{k.id:<22} {k.name[:20]:<20} {k.budget:>10} {k.used:>10} {k.remaining:>10} {qps:>8}  "
            f"{'yes' if k.revoked else 'no'}"
        )


def _print_usage(args: argparse.Namespace, op) -> None:
    """Apply ``op`` to the ledger, then print the key's usage as it now stands."""

    def then_usage(ledger):
        op(ledger)
        return ledger.usage(args.key_id)

    print(json.dumps(_call(args, then_usage).model_dump(), indent=2))


def _revoke(args: argparse.Namespace) -> None:
    _print_usage(args, lambda ledger: ledger.revoke(args.key_id))


def _topup(args: argparse.Namespace) -> None:
    _queries("--queries", args.queries, 1)
    _print_usage(args, lambda ledger: ledger.topup(args.key_id, args.queries))


def _usage(args: argparse.Namespace) -> None:
    _print_usage(args, lambda ledger: None)
