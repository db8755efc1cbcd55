"""Open-vocabulary classes for an export: new class names cost only their prompts.

ADiP's student (and its ablations, SD) predicts ``s · cos(P f(x), T_c)`` against the teacher's class
text embeddings ``T_c``; it was trained to put images where the teacher's image tower puts them. So
any class the teacher can name is a class the student can score: ``vl2v export RUN --classes a,b,c``
buys ``T_c`` for those names and stores them in the exported model in place of the run's own. A
linear-head method (ERM, LP, LP-FT, KD) has no such head and is refused before anything is bought.

The prompts are bought exactly as ``vl2v embed`` buys a task's (:func:`client_distill.buy.embed.make_plan`
and :func:`~client_distill.buy.embed.buy` with no images: ``template.format(class)`` for each template,
averaged per class and L2-normalised as CLIP does), through the same budgeted, disk-cached
:class:`~client_distill.buy.teacher.Teacher` with the same vendor settings, so a second export of the same
classes is served from the cache and pays nothing. The budget is the prompts themselves: nothing else
can be sent.

Embeddings of another model (or other weights under the same name) would be meaningless to the
student, so the vendor's model id and revision must be those of the run's teacher set; this is
checked from ``/v1/models`` before any query is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from client_distill.buy.embed import buy, load_templates, make_plan
from client_distill.buy.query_ledger import ledger_totals
from client_distill.buy.vendor import VendorConfig, open_teacher
from client_distill.deploy.model_card import teacher_manifest
from client_distill.errors import UsageError
from client_distill.methods.registry import method_class
from client_distill.train.run_reader import RunReader


@dataclass
class Vocabulary:
    """Class names, the prompts bought for them, their prompt-averaged unit text embeddings ``[C, D]``
    and what buying them took (``facts``: templates, model, queries paid and from the cache)."""

    classes: list[str]
    prompts: list[list[str]]
    embeddings: np.ndarray
    facts: dict[str, Any] = field(default_factory=dict)


def parse_classes(text: str) -> list[str]:
    """``"a, b,c"`` → ``["a", "b", "c"]``; at least two distinct names (one class is no classifier)."""
    classes = [c.strip() for c in text.split(",") if c.strip()]
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        raise UsageError(f"--classes names {', '.join(duplicates)} more than once")
    if len(classes) < 2:
        raise UsageError(f"--classes needs at least two comma-separated class names, got {text!r}")
    return classes


def require_text_head(run: str | Path) -> dict[str, Any]:
    """The run's ``args.json`` if its method predicts with the teacher's text embeddings; a one-line
    :class:`UsageError` otherwise (checked before any query is bought)."""
    args = RunReader(run).args()
    if method_class(args["method"]).export_head != "text":
        raise UsageError(
            f"--classes needs a method that predicts with the teacher's text embeddings (adip, its variants, sd); "
            f"run {Path(run).name} is {args['method']!r}, whose linear head knows only its trained classes"
        )
    return args


def buy_vocabulary(run: str | Path, classes: list[str], templates_file: str | None, vendor: VendorConfig) -> Vocabulary:
    """Buy the text embeddings of ``classes`` from ``vendor`` (the vendor settings of every client
    command: ``--vendor``, ``--vendor-url``, ``--api-key``, ``--model``, ``--cache``), after checking that
    it serves the run's teacher (see the module docstring)."""
    run_args = require_text_head(run)
    manifest = teacher_manifest(run_args.get("teacher"))
    if not manifest.get("model"):
        raise UsageError(
            f"the run's teacher set {run_args.get('teacher')} is not readable from here, so the vendor's model "
            "cannot be checked against the one the student learnt from; run from the folder the run was made in"
        )
    templates = load_templates(templates_file)
    plan = make_plan(classes, templates, [], views=1, budget=len(classes) * len(templates))
    with open_teacher(vendor, budget=len(plan.texts)) as teacher:
        served = (teacher.model, teacher.adapter.revision)
        wanted = (manifest["model"], manifest.get("model_revision"))
        if served[0] != wanted[0] or (wanted[1] and served[1] != wanted[1]):
            raise UsageError(
                f"the vendor serves {served[0]} (revision {served[1]}), but the run's student learnt from "
                f"{wanted[0]} (revision {wanted[1]}); text embeddings of another model mean nothing to it"
            )
        buy(teacher, Path("."), plan, 0, {}, lambda _: None)
        queries = {"texts": len(plan.texts), "paid": teacher.paid, "cache_hits": teacher.hits}
        # again, now all from the cache (free): the vectors as the cache stores them (float16), which every
        # later export of these classes reads, so that two exports of the same classes are the same model
        bought = buy(teacher, Path("."), plan, 0, {}, lambda _: None)
        facts = {
            "templates": templates,
            "vendor": teacher.adapter.name,
            "model": served[0],
            "revision": served[1],
            "price_per_query": teacher.adapter.card.get("price_per_query"),
            "queries": queries,
            "ledger": ledger_totals(teacher.cache, teacher.ledger.account),
        }
    return Vocabulary(classes, bought.prompts, np.asarray(bought.text_embeddings, dtype=np.float32), facts)
