"""``vl2v report``: the tables (mean ± SE) and the accuracy-vs-budget plot of finished runs."""

from __future__ import annotations

import argparse

from client_distill.buy.settings import ClientSettings


def register(subparsers: argparse._SubParsersAction, settings: ClientSettings) -> None:
    p = subparsers.add_parser("report", help="tables (mean ± SE) and accuracy_vs_budget.png from finished runs")
    p.add_argument("runs", help="folder holding run folders")
    p.add_argument("--out", required=True, help="folder for report.md and accuracy_vs_budget.png")
    p.add_argument(
        "--no-diagnostics",
        dest="diagnostics",
        action="store_false",
        help="skip the premise diagnostics (they read the runs' data, student and teacher set; cached in OUT)",
    )
    p.add_argument(
        "--no-cost",
        dest="cost",
        action="store_false",
        help="skip the cost against the teacher (it exports one run to a temporary folder and times it on the CPU)",
    )
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from client_distill.report.report import write_report  # not at `vl2v --help` time

    print(write_report(args.runs, args.out, diagnostics=args.diagnostics, cost=args.cost))
    return 0
