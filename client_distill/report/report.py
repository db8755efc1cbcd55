"""``vl2v report``: DomainBed's collect_results for our runs, plus the query-budget axis, the hparam
search and the premise diagnostics.

For every finished protocol run the result is the model it outputs
(:func:`~client_distill.train.model_selection.select`: SWAD's average where the run used SWAD, else the
best checkpoint by training-domain validation; the target is never used to choose), scored on the target
domain's 80 % "in" split (``env{test}_in_acc``, as DomainBed and the paper's code report). Cells are
mean ± standard error over seeds (sample std / √n; "–" with one seed). Writes ``report.md`` and
``accuracy_vs_budget.png``.

Queries are what a run *paid*: its records' final totals (an online run pays for every step). A folder
must hold one protocol run per (method, teacher mode, budget, target, seed): two runs of the same cell
with other settings would be pooled as if they were more seeds, so that is refused. The search's
candidate runs are reported apart, through the summary each protocol run carries.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from client_distill.errors import UsageError, Vl2vError
from client_distill.report import convergence, paired, premises
from client_distill.report.paired import Row
from client_distill.train.model_selection import mean_se, select
from client_distill.train.run_reader import DONE_FILE, RunReader, is_search_candidate

DIAGNOSTICS_FILE = "diagnostics.json"


@dataclass(frozen=True)
class Result:
    """The output model of one protocol run, reduced to what the tables need."""

    dataset: str
    method: str
    teacher_mode: str
    budget: float | None
    test_domain: str
    seed: int
    ood: float  # target domain, "in" split
    id: float  # source domains, "out" splits (the selection criterion)
    model: str  # swad / best / teacher
    queries_images: int  # paid by the whole run for training
    queries_eval_images: int
    args: dict[str, Any]
    hparams: dict[str, Any]  # as the run resolved them
    rise: float | None = None  # source validation over the last quarter of its steps (report/convergence.py)
    collapsed: bool = False  # its output model fell far below what the run had reached (report/convergence.py)
    reached: float | None = None  # the best source validation any of its records holds (report/convergence.py)
    machine: str | None = None  # what computed it (train/run.py's ``machine``; None in records before 2026-12-07)
    seconds: float | None = None  # what its processes ran, resumes summed (``run_seconds``; None likewise)

    @property
    def views(self) -> int:
        """Views per image of a point past the budgets (``more_views``); 1 elsewhere."""
        return int(self.args.get("views") or 1)

    @property
    def row(self) -> Row:
        return (self.method, self.teacher_mode, -1.0 if self.budget is None else self.budget, self.views)


#: what a 0 % row is, said wherever one is shown (issue 21: a reader must not take it for distillation)
ZERO_BUDGET_NOTE = [
    "The 0 % rows buy no image and are not distillation: KD at 0 % is cross-entropy on the labels alone "
    "(no teacher logits to match), ADiP at 0 % trains against the class prompts' text embeddings only."
]


def row_label(row: Row) -> str:
    method, mode, budget, views = row
    label = method if budget < 0 else f"{method} @ {budget:.0%}" + (f" × {views} views" if views > 1 else "")
    return label + (" (online)" if mode == "online" else "")


def collect(runs: str | Path) -> list[Result]:
    """Every finished protocol run (``done`` marker) under ``runs``; a second run of the same table
    cell and seed is a :class:`UsageError` naming both. Search candidates are left out."""
    out, seen = [], {}
    for done in sorted(Path(runs).rglob(DONE_FILE)):
        records = RunReader(done.parent).records()
        if not records:
            continue
        r = select(records)
        args = r["args"]
        if is_search_candidate(args):
            continue
        paid = {
            k: max(int(x.get(k) or 0) for x in records) for k in ("queries_images", "queries_eval_images")
        }  # running totals
        result = Result(
            dataset=r["dataset"],
            method=args["method"],
            teacher_mode=args["teacher_mode"],
            budget=args["budget"],
            test_domain=r["test_domain"],
            seed=args["seed"],
            ood=r[f"env{r['test_env']}_in_acc"],
            id=r["source_val_acc"],
            model=r["model"],
            queries_images=paid["queries_images"],
            queries_eval_images=paid["queries_eval_images"],
            args=args,
            hparams=r["hparams"],
            rise=convergence.last_quarter_rise(records),
            collapsed=convergence.collapsed(records, r),
            reached=convergence.best_reached(records),
            machine=r.get("machine"),
            seconds=max((x["run_seconds"] for x in records if "run_seconds" in x), default=None),
        )
        cell = (result.dataset, result.row, result.test_domain, result.seed)
        if cell in seen:
            raise UsageError(
                f"{seen[cell]} and {done.parent} are both {row_label(result.row)} on {result.test_domain}, "
                f"seed {result.seed} (other settings?); report them from separate folders"
            )
        seen[cell] = str(done.parent)
        out.append(result)
    return out


def md_row(*cells: object) -> str:
    """One markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def fmt(values: list[float]) -> str:
    if not values:
        return "X"
    m, se = mean_se(values)
    return f"{100 * m:.1f} ± {'–' if np.isnan(se) else f'{100 * se:.1f}'}"


def per_seed_average(results: list[Result], domains: list[str], attr: str = "ood") -> list[float]:
    """The average over target domains, one value per seed that has every domain."""
    by_seed: dict[int, dict[str, float]] = defaultdict(dict)
    for r in results:
        by_seed[r.seed][r.test_domain] = getattr(r, attr)
    return [float(np.mean([d[x] for x in domains])) for d in by_seed.values() if all(x in d for x in domains)]


#: what the runs output, by the set of their ``swad`` values
OUTPUT_MODEL = {
    frozenset({True}): "model SWAD's loss-valley average (n_converge/n_tolerance/ratio {window})",
    frozenset({False}): "model the best checkpoint by source validation",
    frozenset(): "model SWAD's average where SWAD is on, else the best checkpoint",
}


def _protocol_lines(results: list[Result]) -> list[str]:
    """What every trained run shares (or the values it takes), so a reader knows what was run."""
    trained = [r for r in results if r.method != "zero_shot"]
    if not trained:
        return []

    def values(key: str) -> str:
        return ", ".join(str(v) for v in sorted({r.hparams[key] for r in trained}, key=str))

    swad = {r.hparams["swad"] for r in trained}
    window = f"{values('swad_n_converge')}/{values('swad_n_tolerance')}/{values('swad_tolerance_ratio')}"
    by_method: dict[str, set] = defaultdict(set)
    for r in trained:
        by_method[r.method].add(r.hparams["lr"])
    lrs = ", ".join(f"{m} {'/'.join(str(v) for v in sorted(vs))}" for m, vs in sorted(by_method.items()))
    return [
        f"Student {', '.join(sorted({r.args['student'] for r in trained}))} (hparams profile "
        f"{', '.join(sorted({r.args['profile'] for r in trained}))}): {values('steps')} steps per stage (two-stage "
        f"methods train each stage as long), {values('batch_per_domain')} images per source domain per step, Adam "
        f"(weight decay {values('weight_decay')}), source validation every {values('checkpoint_freq')} steps; output "
        + OUTPUT_MODEL.get(frozenset(swad), OUTPUT_MODEL[frozenset()]).format(window=window)
        + f". Learning rates: {lrs}"
        + (" (chosen per target domain: see the search)." if any(len(v) > 1 for v in by_method.values()) else "."),
        machines_line(results),
    ]


def machines_line(results: list[Result]) -> str:
    """Which machines computed the runs, with their counts and run time: runs are bit-reproducible on one
    kind of machine only, so a protocol resumed on another kind says so, and what it cost there."""
    by_machine: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        by_machine[r.machine or "not recorded (runs made before records named their machine)"].append(r)
    parts = []
    for name, runs in sorted(by_machine.items()):
        timed = [r.seconds for r in runs if r.seconds is not None]
        time = f", {sum(timed) / 3600:.2f} h of run time" if timed else ""
        untimed = f" ({len(runs) - len(timed)} without a recorded time)" if timed and len(timed) < len(runs) else ""
        parts.append(f"{name}: {len(runs)} run{'s' * (len(runs) != 1)}{time}{untimed}")
    return "Computed on: " + "; ".join(parts) + "."


def tables(results: list[Result], diagnostics: dict[str, dict] | None = None) -> str:
    """The markdown report: per dataset, the OOD table, ID vs OOD, the efficiency of cached vs
    online, the hparam search and the premise diagnostics."""
    synthetic = any(r.dataset.startswith("synth") for r in results)
    lines = [
        "# Results" + (" (SYNTHETIC world: the project's own miniature, not a real benchmark)" if synthetic else ""),
        "",
        'Accuracy (%) on the target domain\'s 80 % "in" split (`env{i}_in_acc`) of the model each run outputs,',
        'chosen by training-domain validation only (source domains\' 20 % "out" splits); mean ± standard error',
        "over seeds.",
        "ID is that model's source validation accuracy: the selection criterion itself, so optimistic.",
        "Image queries are what each run paid in all (mean over its runs).",
        *(ZERO_BUDGET_NOTE if any(r.budget == 0 for r in results) else []),
        "",
        *_protocol_lines(results),
        "",
    ]
    for ds in sorted({r.dataset for r in results}):
        rs = [r for r in results if r.dataset == ds]
        domains = sorted({r.test_domain for r in rs})
        rows = sorted({r.row for r in rs})
        lines += [f"## {ds}", "", "| Method | " + " | ".join(domains) + " | Avg |", "|---" * (len(domains) + 2) + "|"]
        for row in rows:
            mine = [r for r in rs if r.row == row]
            cells = [fmt([r.ood for r in mine if r.test_domain == d]) for d in domains]
            lines.append(f"| {row_label(row)} | " + " | ".join(cells) + f" | {fmt(per_seed_average(mine, domains))} |")
        lines += [
            "",
            f"### {ds}: in-domain (source validation) vs out-of-domain (target), averaged over target domains",
            "",
            "| Method | ID | OOD | ID − OOD | image queries (training) | image queries (evaluation) | seeds |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            mine = [r for r in rs if r.row == row]
            ids, oods = per_seed_average(mine, domains, "id"), per_seed_average(mine, domains)
            gap = 100 * (np.mean(ids) - np.mean(oods)) if ids and oods else float("nan")
            q = np.mean([r.queries_images for r in mine])
            qe = np.mean([r.queries_eval_images for r in mine])
            # seeds: how many seeds have every target domain (the averages and their errors use those)
            lines.append(
                f"| {row_label(row)} | {fmt(ids)} | {fmt(oods)} | {gap:.1f} | {q:.0f} | {qe:.0f} | {len(oods)} |"
            )
        methods = sorted({r.method for r in rs} - {"zero_shot"})
        lines += convergence.section({m: [r.rise for r in rs if r.method == m] for m in methods}, failures(rs, methods))
        lines += paired_differences(rs)
        lines += efficiency(rs, rows, domains)
        lines += search_table(rs)
        lines += diagnostics_table(rs, domains, (diagnostics or {}).get(ds))
        lines.append("")
    return "\n".join(lines)


def failures(rs: list[Result], methods: list[str]) -> dict[str, list[str]]:
    """Per method, a label for each run that collapsed or never learnt (:mod:`convergence`), the latter
    judged against the best source validation any trained run of the task reached."""
    task_best = max((r.reached for r in rs if r.method != "zero_shot" and r.reached is not None), default=0.0)
    out: dict[str, list[str]] = {m: [] for m in methods}
    for r in rs:
        if r.method not in out:
            continue
        where = f"{row_label(r.row)} on {r.test_domain} seed {r.seed}"
        if convergence.never_learnt(r.reached, task_best):
            out[r.method].append(f"{where} (never learnt: best source validation {100 * (r.reached or 0):.0f} %)")
        elif r.collapsed:
            out[r.method].append(f"{where} (collapsed)")
    return out


def paired_differences(rs: list[Result]) -> list[str]:
    """The paper's comparisons on one task as paired differences over (target, seed) cells
    (:mod:`client_distill.report.paired`), with the verdict against the paper's direction."""
    cells: dict[Row, dict[paired.Cell, float]] = defaultdict(dict)
    for r in rs:
        cells[r.row][(r.test_domain, r.seed)] = r.ood
    found = paired.comparisons(cells, row_label)
    if not found:
        return []
    return [
        "",
        "### Paired differences (OOD, accuracy points)",
        "",
        "Each the mean over the (target domain, seed) cells both rows finished of the per-cell difference, "
        "its standard error and Student's t 95 % interval; the verdict is against the paper's direction "
        "(holds, reversed, or unresolved when the interval contains 0).",
        "",
        *paired.HEADER,
        *(d.row() for d in found),
    ]


def efficiency(rs: list[Result], rows: list[Row], domains: list[str]) -> list[str]:
    """Cached (budget-aware) vs online (every augmented view bought) on the same tasks and seeds: the
    queries each paid and the OOD accuracy each reached; the cached row is the method's largest budget
    with one view per image."""
    online = [(row, cached) for row in rows if row[1] == "online" and (cached := paired.cached_reference(rows, row[0]))]
    if not online:  # no online run, or none whose method has a cached run to compare with yet
        return []
    lines = [
        "",
        "### Cached teacher set vs online teacher (official recipe: every augmented view queried)",
        "",
        md_row(
            "Method",
            "cached: image queries",
            "cached: OOD",
            "online: image queries",
            "online: OOD",
            "queries online / cached",
        ),
        "|---|---|---|---|---|---|",
    ]
    for row, cached in online:
        c_rs = [r for r in rs if r.row == cached]
        o_rs = [r for r in rs if r.row == row]
        qc, qo = np.mean([r.queries_images for r in c_rs]), np.mean([r.queries_images for r in o_rs])
        ratio = f"{qo / qc:.1f}×" if qc else "∞"
        lines.append(
            md_row(
                row[0],
                f"{qc:.0f}",
                fmt(per_seed_average(c_rs, domains)),
                f"{qo:.0f}",
                fmt(per_seed_average(o_rs, domains)),
                ratio,
            )
        )
    return lines


def search_table(rs: list[Result]) -> list[str]:
    """Each method's hparam search per target domain, as its protocol runs record it: grid, the
    candidates' source-validation scores, the choice."""
    searches = {}
    for r in rs:
        s = r.args.get("search")
        if s and "chosen" in s:
            searches.setdefault((r.method, s.get("target", r.test_domain)), s)
    if not searches:
        return ["", "### Hparam search", "", "None recorded: every method ran with the config's hparams."]
    first = next(iter(searches.values()))
    lines = [
        "",
        "### Hparam search (the same grid for every method; chosen per target domain on source validation only)",
        "",
        f"Grid: `{json.dumps(first['grid'])}`. Criterion: {first['criterion']}."
        + (f" From `{first['source']}`." if first.get("source") else ""),
        "",
        "| Method | target | candidates: source validation (%) | chosen |",
        "|---|---|---|---|",
    ]
    for (method, target), s in sorted(searches.items()):
        cells = ", ".join(f"{_point(c['hparams'])}: {100 * c['score']:.1f}" for c in s["candidates"])
        lines.append(f"| {method} | {target} | {cells} | {_point(s['chosen'])} |")
    return lines


def _point(hparams: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(hparams.items()))


def diagnostics_table(rs: list[Result], domains: list[str], diag: dict | None) -> list[str]:
    """The premises the method relies on, measured (see :mod:`client_distill.report.diagnostics`)."""
    if not diag or "error" in diag:
        why = f"could not be computed: {diag['error']}" if diag else "not computed (`vl2v report --no-diagnostics`)"
        return ["", "### Premise diagnostics", "", why[0].upper() + why[1:] + "."]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    shares = lambda s: " / ".join(f"{100 * s[k]:.0f} %" for k in ("class", "style", "residual")) if s else "–"  # noqa: E731
    params = lambda n: "not stated by the vendor" if n is None else f"{n / 1e6:.2f} M"  # noqa: E731
    erm = [r for r in rs if r.method == "erm"]
    probe = diag.get("frozen_probe_ood", {})
    protos = diag.get("teacher_prototypes", {})
    probe_avg = pct(np.mean([probe[d] for d in domains if d in probe]) if probe else None)
    named = diag.get("teacher_model") is not None  # a sweep without zero-shot runs has no teacher to name
    teacher = f"teacher ({diag['teacher_model']}, revision {diag.get('teacher_revision')})" if named else "teacher"
    rows = [
        (
            f"{teacher} zero-shot per domain, every image",
            ", ".join(f"{d} {pct(v)}" for d, v in diag.get("teacher_zero_shot", {}).items())
            or "– (no `zero_shot` run among these runs)",
        ),
        (
            "teacher image embeddings: variance share class / style / residual",
            shares(diag.get("teacher_embedding_variance")),
        ),
        (
            f"student init ({diag['student']}) features: variance share class / style / residual",
            shares(diag.get("student_feature_variance")),
        ),
        (
            "student init: frozen-feature linear probe (L-BFGS), OOD per target",
            ", ".join(f"{d} {pct(probe.get(d))}" for d in domains) + f"; avg {probe_avg}",
        ),
        (
            "ERM fine-tuned (this protocol), OOD per target",
            ", ".join(f"{d} {fmt([r.ood for r in erm if r.test_domain == d])}" for d in domains),
        ),
        (
            "teacher space, Table A: target accuracy by nearest text prototype (E1) / source-image class mean (E3)",
            ", ".join(f"{d} {pct(protos[d]['e1'])} / {pct(protos[d]['e3'])}" for d in domains if d in protos) or "–",
        ),
        (
            "parameters: teacher image tower / student",
            f"{params(diag.get('teacher_image_params'))} / {params(diag.get('student_params'))}",
        ),
        (
            "teacher logit scale (KD and the text head use it)",
            scale_text(diag.get("teacher_logit_scale")),
        ),
        ("ID (source validation) of every method", "see the ID vs OOD table: an under-trained run shows there"),
    ]
    bands = premises.load_bands(rs[0].dataset)
    measured = premises.measure(premise_inputs(rs, domains, diag))
    return [
        "",
        "### Premise diagnostics",
        "",
        md_row("premise", "measured"),
        "|---|---|",
        *(md_row(*row) for row in rows),
        "",
        "### The paper's regime: the premises" + (" against their pre-registered bands" if bands else ""),
        "",
        "Each premise in accuracy points per target, then the mean over targets (`client_distill/report/premises.py`;",
        "bands: `client_distill/report/premises.yaml`, pre-registered in `docs/results/calibration.md`). Teacher:",
        "the `zero_shot` runs where the report has them, else E1 (the same classifier).",
        "",
        *premises.table(domains, measured, bands),
    ]


def premise_inputs(rs: list[Result], domains: list[str], diag: dict) -> dict[str, dict[str, float | None]]:
    """Per target, what :func:`client_distill.report.premises.measure` needs, from the runs (ERM, zero-shot:
    means over seeds) and the diagnostics (probe, E1, E3)."""

    def mean_of(method: str, domain: str, attr: str) -> float | None:
        values = [getattr(r, attr) for r in rs if r.method == method and r.test_domain == domain]
        return float(np.mean(values)) if values else None

    out = {}
    for d in domains:
        protos = diag.get("teacher_prototypes", {}).get(d, {})
        teacher = mean_of("zero_shot", d, "ood")
        out[d] = {
            "probe": diag.get("frozen_probe_ood", {}).get(d),
            "erm_ood": mean_of("erm", d, "ood"),
            "erm_id": mean_of("erm", d, "id"),
            "teacher": teacher if teacher is not None else protos.get("e1"),
            "e1": protos.get("e1"),
            "e3": protos.get("e3"),
        }
    return out


def scale_text(scale: float | None) -> str:
    return "not stated: 100 (CLIP's) assumed" if scale is None else f"{scale:.1f}"


def compute_diagnostics(results: list[Result], out: Path) -> dict[str, dict]:
    """Diagnostics per dataset, computed from what the runs name (data, student, the zero-shot run's
    full teacher set) and cached in ``out/diagnostics.json`` under those inputs."""
    cache_file = out / DIAGNOSTICS_FILE
    cached = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    found = {}
    for ds in sorted({r.dataset for r in results}):
        rs = [r for r in results if r.dataset == ds]
        students = [r.args for r in rs if r.method != "zero_shot"]
        teachers = [r.args["teacher"] for r in rs if r.method == "zero_shot" and r.args.get("teacher")]
        if not students:
            continue
        inputs = {
            "data": students[0]["data"], "dataset": students[0]["dataset"], "student": students[0]["student"],
            "teacher": teachers[0] if teachers else None, "targets": sorted({r.test_domain for r in rs}),
        }  # fmt: skip
        if cached.get(ds, {}).get("inputs") == inputs:
            found[ds] = cached[ds]
            continue
        from client_distill.report.diagnostics import diagnose  # torch: only when there is something to compute

        try:
            found[ds] = {
                **diagnose(inputs["data"], inputs["dataset"], inputs["student"], inputs["teacher"], inputs["targets"]),
                "inputs": inputs,
            }
        except Vl2vError as exc:  # e.g. the data moved, or a relative path read from another directory
            found[ds] = {"error": str(exc), "inputs": inputs}
    cache_file.write_text(json.dumps(found, indent=2) + "\n")
    return found


#: the methods the figure draws as curves with a 95 % band (the issue's question: what ADiP and KD buy)
BANDED = ("adip", "kd")
#: no-image baselines that are drawn as lines: ERM (with its band: the reference every curve is read
#: against) and the teacher's zero-shot; the probes too, when they fall inside the axis
REFERENCE_LINES = {"erm": "--", "zero_shot": ":", "lp": (0, (1, 3)), "lp_ft": (0, (5, 3))}


def plot(results: list[Result], path: Path) -> Path:
    """Per task, two panels over the image queries paid for training, on one axis that is linear up to
    the smallest paid point and logarithmic past it (so 0, the budgets, the extra views and the online
    teacher, an order of magnitude dearer, all keep their resolution).

    Top: OOD accuracy (average over target domains). ADiP and KD are curves with a 95 % band over seeds
    (Student's t), ADiP-joint a curve without one; the online teacher a star on the same axis; the
    baselines that buy no image are horizontal lines (ERM with its band, the teacher's zero-shot dotted).
    The axis is fitted to their means, so a baseline far below (a linear probe) is named in the legend
    instead of squashing the curves, and the band of a point with few seeds may run off it.

    Bottom: the paired difference from ERM over the (target, seed) cells, with its 95 % interval: what
    the unpaired bands above cannot show, since runs of one seed share their split and start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.dataset for r in results})
    fig, axes = plt.subplots(
        2, len(datasets), figsize=(10.0 * len(datasets), 8.0), squeeze=False, height_ratios=(3, 2), sharex="col"
    )
    for column, ds in enumerate(datasets):
        rs = [r for r in results if r.dataset == ds]
        methods = sorted({r.method for r in rs})
        colours = {m: plt.cm.tab10(i % 10) for i, m in enumerate(methods)}
        paid = _accuracy_panel(axes[0][column], rs, colours)
        _paired_panel(axes[1][column], rs, colours)
        axes[0][column].set_title(f"{ds} (SYNTHETIC world)" if ds.startswith("synth") else ds)
        for ax in axes[:, column]:
            if paid:
                ax.set_xscale("symlog", linthresh=paid[0], linscale=0.5)
                ax.set_xlim(left=0, right=paid[-1] * 1.5)
            else:
                ax.set_xlim(left=0)
            ax.grid(alpha=0.3, which="both")
        axes[1][column].set_xlabel("image queries paid for training (0, then logarithmic)")
    fig.text(
        0.01, 0.005, "bands and bars: 95 % intervals (top: over seeds; bottom: over target × seed cells)", fontsize=7
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its Student's t 95 % interval (0 with one value), in points."""
    from scipy import stats

    m, se = mean_se(values)
    half = 0.0 if np.isnan(se) else 100 * se * float(stats.t.ppf(0.975, len(values) - 1))
    return 100 * m, half


def _accuracy_panel(ax: Any, rs: list[Result], colours: dict[str, Any]) -> list[float]:
    """The top panel of :func:`plot`; returns the paid query counts (the x axis's ticks of interest)."""
    domains = sorted({r.test_domain for r in rs})
    points: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for row in sorted({r.row for r in rs}):
        mine = [r for r in rs if r.row == row]
        mean, half = _interval(per_seed_average(mine, domains))
        points[(row[0], row[1])].append((float(np.mean([r.queries_images for r in mine])), mean, half))
    shown = [
        y
        for (method, _), pts in points.items()
        if method in (*BANDED, "adip_joint", "erm", "zero_shot")
        for _, y, _ in pts
    ] or [y for pts in points.values() for _, y, _ in pts]
    pad = max(2.0, 0.5 * (max(shown) - min(shown)))  # the means with room; a band of few seeds may be clipped
    low, high = max(0.0, min(shown) - pad), min(100.5, max(shown) + pad)
    for (method, mode), pts in sorted(points.items()):
        colour = colours[method]
        xs, ys, hs = (np.array(v) for v in zip(*sorted(pts), strict=True))
        if mode == "online":
            ax.errorbar(xs, ys, yerr=hs, marker="*", markersize=12, capsize=3, color=colour, linestyle="none",
                        label=f"{method}, online teacher (every view bought)")  # fmt: skip
        elif len(pts) == 1 and xs[0] == 0:
            label = "teacher (vendor CLIP) zero-shot" if method == "zero_shot" else f"{method} (no image queries)"
            if not low <= ys[0] <= high:
                label += f": {ys[0]:.1f} %, off the axis"
            ax.axhline(ys[0], linestyle=REFERENCE_LINES.get(method, "--"), color=colour, label=label)
            if method == "erm":
                ax.axhspan(ys[0] - hs[0], ys[0] + hs[0], color=colour, alpha=0.10, linewidth=0)
        else:
            banded = method in BANDED
            ax.plot(xs, ys, marker="o" if banded else ".", linestyle="-" if banded else "-.", color=colour,
                    label=method)  # fmt: skip
            if banded:
                ax.fill_between(xs, ys - hs, ys + hs, color=colour, alpha=0.18, linewidth=0)
    ax.set_ylim(low, high)
    ax.set_ylabel(f"OOD accuracy (%), mean over {len(domains)} target domain(s)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return sorted({x for pts in points.values() for x, _, _ in pts if x > 0})


def _paired_panel(ax: Any, rs: list[Result], colours: dict[str, Any]) -> None:
    """The bottom panel of :func:`plot`: each banded method's paired difference from ERM per point."""
    cells: dict[Row, dict[paired.Cell, float]] = defaultdict(dict)
    for r in rs:
        cells[r.row][(r.test_domain, r.seed)] = r.ood
    erm = next((row for row in cells if row[0] == "erm"), None)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("paired difference from ERM\n(OOD points)")
    if erm is None:
        ax.text(0.5, 0.5, "no ERM runs", transform=ax.transAxes, ha="center")
        return
    for method in BANDED:
        for mode in ("cached", "online"):
            rows = sorted(row for row in cells if row[:2] == (method, mode))
            if not rows:
                continue
            diffs = [paired.paired(method, cells[row], "erm", cells[erm]) for row in rows]
            xs = np.array([np.mean([r.queries_images for r in rs if r.row == row]) for row in rows])
            ys = np.array([d.mean for d in diffs])
            hs = np.array([0.0 if np.isnan(d.high) else d.high - d.mean for d in diffs])
            if mode == "online":
                ax.errorbar(xs, ys, yerr=hs, marker="*", markersize=12, capsize=3, color=colours[method],
                            linestyle="none", label=f"{method} (online) − erm")  # fmt: skip
            else:
                ax.plot(xs, ys, marker="o", color=colours[method], label=f"{method} − erm")
                ax.fill_between(xs, ys - hs, ys + hs, color=colours[method], alpha=0.18, linewidth=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


#: methods tried first as the cost section's representative student (any exportable run would do: every
#: method of a protocol trains the same student; a text head adds one matrix product)
COST_PREFERENCE = ("adip", "adip_joint", "sd", "erm", "lp_ft", "kd", "lp")


def cost_section(runs: str | Path, results: list[Result], cpu_price_per_core_hour: float = 0.0) -> list[str]:
    """The student against the teacher, per dataset: one representative run is exported to a temporary
    folder (:func:`client_distill.deploy.export.export_run`, so the numbers are those its model card states:
    parameters, one-thread CPU latency and throughput under PyTorch and onnxruntime, the teacher's price
    per query from the ``/v1/models`` card its teacher set kept), then each table row's mean training
    image queries become a break-even number of predictions (:func:`client_distill.deploy.cost.break_even`,
    against the vendor's zero-shot classifier). A dataset whose runs cannot be exported says why."""
    import tempfile

    from client_distill.deploy.cost import break_even, speed_rows
    from client_distill.deploy.export import export_run  # torch: only when a report is written

    lines = []
    folders: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for done in sorted(Path(runs).rglob(DONE_FILE)):
        try:
            args = RunReader(done.parent).args()
        except UsageError:
            continue
        if args.get("method") in COST_PREFERENCE and not is_search_candidate(args):
            rank = COST_PREFERENCE.index(args["method"])
            folders[str(args.get("dataset") or Path(str(args.get("data"))).name)].append((rank, done.parent))
    for ds in sorted({r.dataset for r in results}):
        lines += [f"## {ds}: cost against the teacher", ""]
        card, why = None, "no run of a method with a student"
        for _, folder in sorted(folders.get(ds, []), key=lambda x: x[0])[:1]:
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    info = export_run(folder, Path(tmp) / "export", "onnx", None, cpu_price_per_core_hour)
                card = info.extra["model_card"]
            except (Vl2vError, OSError, KeyError, ValueError, RuntimeError) as exc:  # the report still stands
                why = f"{folder.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if card is None:
            lines += [f"Not measured ({why}).", ""]
            continue
        c, price, texts = card["cost"], card["teacher"]["price_per_query"], card["queries"]["class_texts"]
        per_core = max(s["throughput_batch64"] for s in c["speeds"])
        lines += [
            f"Student `{card['data']['dataset']}` run `{info.run['id']}` ({info.method}, exported to ONNX): "
            f"{c['student_params']:,} parameters, {c['image_size']}×{c['image_size']} input; teacher "
            f"`{card['teacher']['model']}` at {price} per query (`/v1/models`). Measured on one CPU thread:",
            "",
            *speed_rows(c["speeds"]),
            "",
            f"Break-even: predictions after which the student, including the queries that trained it, is cheaper "
            f"than {c['break_even']['alternative']}; {c['break_even']['assumption']}.",
            "",
            "| Method | image queries (training) | break-even predictions |",
            "|---|---|---|",
        ]
        rs = [r for r in results if r.dataset == ds and r.method != "zero_shot"]
        for row in sorted({r.row for r in rs}):
            q = float(np.mean([r.queries_images for r in rs if r.row == row]))
            b = break_even(round(q) + texts, texts, price, per_core, cpu_price_per_core_hour)
            n = "never" if b["predictions"] is None else f"{b['predictions']:,}"
            lines.append(f"| {row_label(row)} | {q:.0f} | {n} |")
        lines.append("")
    return lines


def _why_none(runs: Path) -> str:
    """Why :func:`collect` found nothing: a sweep whose search is still running has only candidates."""
    candidates = sum(
        is_search_candidate(select(records)["args"])
        for done in runs.rglob(DONE_FILE)
        if (records := RunReader(done.parent).records())
    )
    if candidates:
        return f" (only {candidates} finished hparam-search candidates, which a report leaves out)"
    return " (folders with a `done` marker)"


def write_report(runs: str | Path, out: str | Path, diagnostics: bool = True, cost: bool = True) -> Path:
    """Collect the finished runs under ``runs`` and write ``report.md`` and ``accuracy_vs_budget.png``
    (with the premise diagnostics unless ``diagnostics`` is False, and the cost against the teacher
    unless ``cost`` is False)."""
    results = collect(runs)
    if not results:
        raise UsageError(f"no finished protocol runs under {runs}{_why_none(Path(runs))}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    diag = compute_diagnostics(results, out) if diagnostics else None
    costs = "\n".join(["", *cost_section(runs, results)]) if cost else ""
    (out / "report.md").write_text(
        tables(results, diag) + costs + "\n\n![OOD accuracy vs image queries](accuracy_vs_budget.png)\n"
    )
    plot(results, out / "accuracy_vs_budget.png")
    return out / "report.md"
