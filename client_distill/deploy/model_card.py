"""The model card of an export: what a student is, what it was taught by, what it cost, what it scores.

Someone handed an export folder must be able to tell, without the run folder, which teacher the
student imitates (so that new class prompts are bought from the *same* model), how many queries were
paid for it, how it was trained, on what data, and how well it did in and out of domain. ``vl2v
export`` writes these facts twice: as ``model_card`` in ``metadata.json`` (for programs; kept by any
later rewrite of the file, see :class:`~client_distill.deploy.model_info.ModelInfo`'s ``extra``) and as
``MODEL_CARD.md`` (for people), both from the one dict :func:`build_card` returns.

Sources, all files the run already wrote: ``args.json`` (method, data, target, seed, teacher mode and
budget), the selected record of ``results.jsonl`` (hparams as resolved, query totals, ID = source
validation accuracy, OOD = the target's "in" split accuracy), the teacher set's ``manifest.json``
(vendor flavour, model id, weights revision, the ``/v1/models`` card with ``price_per_query``, views,
what the purchase paid and took from the cache), and the sibling runs of the same configuration with
other seeds in the run's parent folder (mean ± SE over seeds, as ``vl2v report`` computes it).
The vendor's URL is reduced to its path: a host is deployment detail, sometimes private.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from client_distill.errors import UsageError
from client_distill.train.model_selection import mean_se, select
from client_distill.train.run_reader import RunReader, is_search_candidate

CARD_FILE = "MODEL_CARD.md"
#: the label of every result from the project's synthetic world (its tasks and its vl2v-tiny teacher)
SYNTHETIC_LABEL = "SYNTHETIC world (the project's own miniature: synth-* data, vl2v-tiny teacher), not a real benchmark"
#: the args.json fields that make two runs the same configuration up to the seed
SAME_CONFIG = ("method", "dataset", "data", "test_domain", "student", "pretrained", "profile", "hparams")
SAME_CONFIG += ("budget", "teacher_mode")


def teacher_manifest(teacher: str | None) -> dict[str, Any]:
    """The run's teacher set manifest (without its per-class prompts), or ``{}`` where unreadable."""
    if not teacher:
        return {}
    try:
        manifest = json.loads((Path(teacher) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in manifest.items() if k != "prompts"} if isinstance(manifest, dict) else {}


def _paid(records: list[dict[str, Any]], key: str) -> int:
    """A running query total's final value (``vl2v report`` reads them the same way)."""
    return max((int(r.get(key) or 0) for r in records), default=0)


def _accuracy(record: dict[str, Any]) -> tuple[float, float]:
    """(ID, OOD) of a selected record: source validation, and the target's "in" split."""
    return float(record["source_val_acc"]), float(record[f"env{record['test_env']}_in_acc"])


def seed_accuracy(run: Path, args: dict[str, Any]) -> dict[str, Any]:
    """ID and OOD accuracy, mean ± SE, over the finished runs beside ``run`` whose configuration
    (:data:`SAME_CONFIG`) is this run's, one per seed (search candidates left out)."""
    by_seed: dict[int, tuple[float, float]] = {}
    for other in map(RunReader, sorted(run.parent.iterdir())):
        try:
            other_args = other.args()
        except UsageError:
            continue
        if not other.done or is_search_candidate(other_args):
            continue
        if any(other_args.get(k) != args.get(k) for k in SAME_CONFIG):
            continue
        records = other.records()
        if records:
            by_seed.setdefault(int(other_args["seed"]), _accuracy(select(records)))
    seeds = sorted(by_seed)
    summary: dict[str, Any] = {"seeds": seeds}
    for i, name in enumerate(("id", "ood")):
        mean, se = mean_se([by_seed[s][i] for s in seeds])
        summary[name] = {"mean": mean, "se": None if se != se else se}  # NaN (one seed) -> None
    return summary


def build_card(
    run: str | Path, info: Any, cost: dict[str, Any], open_vocabulary: dict[str, Any] | None
) -> dict[str, Any]:
    """The card's facts (see the module docstring) for the export of ``run`` described by ``info``
    (a :class:`~client_distill.deploy.model_info.ModelInfo`); ``cost`` from :mod:`client_distill.deploy.cost`,
    ``open_vocabulary`` the class prompts bought for an export with ``--classes`` (or None)."""
    run = Path(run)
    reader = RunReader(run)
    args = reader.args()
    records = reader.records()
    record = select(records)
    manifest = teacher_manifest(args.get("teacher"))
    card = manifest.get("model_card") or {}
    url = manifest.get("vendor_url")
    dataset = str(record.get("dataset") or args.get("dataset") or "")
    domains = list(record["domains"])
    accuracy_id, accuracy_ood = _accuracy(record)
    synthetic = dataset.startswith("synth-") or manifest.get("model") == "vl2v-tiny"
    return {
        "synthetic": synthetic,
        "label": SYNTHETIC_LABEL if synthetic else None,
        "teacher": {
            "vendor": manifest.get("vendor"),
            "url_path": (urlsplit(url).path or "/") if url else None,  # the host is left out on purpose
            "model": manifest.get("model"),
            "revision": manifest.get("model_revision"),
            "logit_scale": manifest.get("logit_scale"),
            "price_per_query": card.get("price_per_query"),
            "image_params": card.get("image_params"),
        },
        "queries": {
            "teacher_mode": args.get("teacher_mode"),
            "image_budget": args.get("budget"),
            "class_texts": int(record.get("queries_texts") or 0),
            "image_queries": _paid(records, "queries_images"),
            "evaluation_image_queries": _paid(records, "queries_eval_images"),
            "views_per_image": manifest.get("views"),
            "teacher_set_images": manifest.get("n_images"),
            "teacher_set_purchase": manifest.get("queries"),
            "open_vocabulary_texts": (open_vocabulary or {}).get("queries"),
        },
        "method": {"name": args["method"], "hparams": record.get("hparams", {}), "output_model": record["model"]},
        "data": {
            "dataset": dataset or None,
            "folder": args.get("data"),
            "domains": domains,
            "target_domain": record["test_domain"],
            "source_domains": [d for d in domains if d != record["test_domain"]],
            "trained_classes": (open_vocabulary or {}).get("trained_classes", list(info.classes)),
            "export_classes": list(info.classes),
        },
        "accuracy": {
            "note": "on the run's own classes and DomainBed splits; ID = source domains' 20 % 'out' splits "
            "(the selection criterion, optimistic), OOD = the target domain's 80 % 'in' split",
            "this_run": {"seed": args.get("seed"), "id": accuracy_id, "ood": accuracy_ood},
            "over_seeds": seed_accuracy(run, args),
        },
        "cost": cost,
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _mean_se(d: dict[str, Any]) -> str:
    return f"{_pct(d['mean'])} ± {_pct(d['se'])}"


def _purchase(p: dict[str, Any] | None) -> str:
    """The teacher set's own ``vl2v embed`` call: what it paid and what the cache already held."""
    if not p:
        return "its purchase is not recorded"
    return (
        f"the `vl2v embed` call that wrote it planned {p.get('planned')} queries ({p.get('texts')} texts): "
        f"paid {p.get('paid_this_run')}, from the cache {p.get('cache_hits_this_run')}"
    )


def break_even_text(b: dict[str, Any]) -> str:
    """A break-even without a number: never (the CPU costs as much as a query), or not known (no price)."""
    return (
        "never (a CPU prediction costs as much as a query)"
        if "CPU" in b.get("reason", "")
        else f"unknown ({b.get('reason')})"
    )


def render(card: dict[str, Any], info: Any) -> str:
    """``MODEL_CARD.md``: the same facts as ``card``, for a person."""
    from client_distill.deploy.cost import speed_rows

    t, q, m, d, a, c = (card[k] for k in ("teacher", "queries", "method", "data", "accuracy", "cost"))
    lines = [f"# Model card: {info.method} student `{info.student}`", ""]
    if card["label"]:
        lines += [f"**{card['label']}.**", ""]
    ov = card["queries"]["open_vocabulary_texts"]
    lines += [
        f"A classifier (`{info.model_format}`) of {info.preprocessing.image_size}×{info.preprocessing.image_size} "
        f"images into {len(info.classes)} classes ({info.head} head), exported from run `{info.run['id']}` "
        f"({m['output_model']} model).",
        "",
        "## Teacher",
        *(
            [
                f"- vendor `{t['vendor']}` (URL path `{t['url_path']}`, host omitted), model `{t['model']}`, "
                f"weights revision `{t['revision']}`, logit scale {t['logit_scale']}",
                f"- price per query (`/v1/models`): {t['price_per_query']}",
            ]
            if t["model"]
            else ["- none recorded: the run has no teacher set, or its manifest is not readable from here"]
        ),
        "",
        "## Queries paid",
        f"- teacher mode: {q['teacher_mode']}; image budget: {q['image_budget']}",
        f"- class prompt texts: {q['class_texts']}; image queries for training: {q['image_queries']} "
        f"(evaluation image queries: {q['evaluation_image_queries']})",
    ]
    if q["teacher_set_images"] is not None:
        lines.append(
            f"- teacher set: {q['teacher_set_images']} images, {q['views_per_image']} view(s) each; "
            f"{_purchase(q['teacher_set_purchase'])}"
        )
    if ov:
        lines.append(
            f"- open-vocabulary class prompts for this export: {ov['texts']} texts, paid {ov['paid']}, "
            f"from the cache {ov['cache_hits']}"
        )
    lines += [
        "",
        "## Method and data",
        f"- method `{m['name']}`, hparams: `{json.dumps(m['hparams'], sort_keys=True)}`",
        f"- data `{d['dataset']}` ({d['folder']}), sources {', '.join(d['source_domains'])}, "
        f"target (held out) `{d['target_domain']}`",
        f"- trained on classes: {', '.join(d['trained_classes'])}",
    ]
    if ov:
        lines.append(
            f"- **exported for other classes** (never trained on, zero-shot through the teacher's text "
            f"embeddings): {', '.join(d['export_classes'])}"
        )
    s = a["over_seeds"]
    lines += [
        "",
        "## Accuracy (%)",
        f"{a['note']}.",
        "",
        "| | ID | OOD | seeds |",
        "|---|---|---|---|",
        f"| this run | {_pct(a['this_run']['id'])} | {_pct(a['this_run']['ood'])} | {a['this_run']['seed']} |",
        f"| same configuration, mean ± SE | {_mean_se(s['id'])} | {_mean_se(s['ood'])} | "
        f"{', '.join(map(str, s['seeds']))} |",
        "",
        "## Cost against the teacher",
        f"- student parameters: {c['student_params']:,}; input {c['image_size']}×{c['image_size']}",
        "",
        *speed_rows(c["speeds"]),
        "",
    ]
    b = c["break_even"]
    verdict = f"after **{b['predictions']:,} predictions**" if b.get("predictions") is not None else break_even_text(b)
    lines += [
        f"- break-even: the student, including the {b['training_queries']} queries that trained it"
        f"{' and its open-vocabulary prompts' if ov else ''}, is cheaper than {b['alternative']} {verdict}; "
        f"assumption: {b['assumption']}, price per query {b['price_per_query']}.",
        "",
    ]
    return "\n".join(lines)
