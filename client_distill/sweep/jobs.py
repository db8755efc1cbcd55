"""What a sweep's worker processes run, one call each: a distillation run or a teacher-set purchase,
given as typed values (the RunSpec, the purchase order and the sweep's vendor settings), never as a
command line. Each returns an exit status and reports a user error as one line in the run's log, as
``vl2v distill`` and ``vl2v embed`` would; unset vendor settings are the worker's environment's (the
sweep's ``VL2V_*``, which every launcher hands its workers)."""

from __future__ import annotations

from pathlib import Path

from client_distill.buy.embed import PurchaseOrder, buy_teacher_set
from client_distill.buy.vendor import VendorConfig
from client_distill.errors import Vl2vError
from client_distill.train.job import distill
from client_distill.train.probe import student_features, uncertainty_ranker
from client_distill.train.runspec import RunSpec
from shared.cli import call


def distill_job(spec: RunSpec, out: str | Path, vendor: VendorConfig) -> int:
    """One run of a sweep; only an online run talks to ``vendor``."""
    return call("vl2v distill", lambda: distill(spec, out, vendor), (Vl2vError,))


def purchase_job(order: PurchaseOrder, vendor: VendorConfig) -> int:
    """One teacher set of a sweep, bought from ``vendor`` through its cache."""

    def purchase() -> None:
        buy_teacher_set(order, vendor, student_features, uncertainty_ranker)

    return call("vl2v", purchase, (Vl2vError,))
