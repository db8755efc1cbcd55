"""``vl2v report``: DomainBed's collect_results for our runs, plus the query-budget axis.

For every finished run, the checkpoint is selected by training-domain validation (mean accuracy on
the source domains' 20 % "out" splits; the target is never used), and scored on the target domain's
80 % "in" split (``env{test}_in_acc``, as DomainBed and the paper's code report). Cells are
mean ± standard error over seeds (sample std / √n; "–" with one seed). Writes ``report.md`` and
``accuracy_vs_budget.png``.

Queries are what a run *paid*: its records' final totals, whichever checkpoint is selected (an online
run pays for every step, including those after its best checkpoint). A folder must hold one run per
(method, teacher mode, budget, target, seed): two runs of the same cell with other settings (student,
hparams, teacher set) would be pooled as if they were more seeds, so that is refused.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from client_distill.errors import UsageError
from client_distill.train import load_records, select


@dataclass(frozen=True)
class Result:
    """The selected checkpoint of one run, reduced to what the tables need."""

    dataset: str
    method: str
    teacher_mode: str
    budget: float | None
    test_domain: str
    seed: int
    ood: float  # target domain, "in" split
    id: float  # source domains, "out" splits (the selection criterion)
    queries_images: int  # paid by the whole run for training (not only up to the selected checkpoint)
    queries_eval_images: int

    @property
    def row(self) -> tuple[str, str, float]:
        return (self.method, self.teacher_mode, -1.0 if self.budget is None else self.budget)


def row_label(row: tuple[str, str, float]) -> str:
    method, mode, budget = row
    label = method if budget < 0 else f"{method} @ {budget:.0%}"
    return label + (" (online)" if mode == "online" else "")


def collect(runs: str | Path) -> list[Result]:
    """Every finished run (``done`` marker) under ``runs``; a second run of the same table cell and
    seed is a :class:`UsageError` naming both."""
    out, seen = [], {}
    for done in sorted(Path(runs).rglob("done")):
        records = load_records(done.parent)
        if not records:
            continue
        r = select(records)
        paid = {k: max(int(x[k]) for x in records) for k in ("queries_images", "queries_eval_images")}  # running totals
        args = r["args"]
        result = Result(
            dataset=r["dataset"],
            method=args["method"],
            teacher_mode=args["teacher_mode"],
            budget=args["budget"],
            test_domain=r["test_domain"],
            seed=args["seed"],
            ood=r[f"env{r['test_env']}_in_acc"],
            id=r["source_val_acc"],
            queries_images=paid["queries_images"],
            queries_eval_images=paid["queries_eval_images"],
        )
        cell = (result.dataset, result.row, result.test_domain, result.seed)
        if cell in seen:
            raise UsageError(f"{seen[cell]} and {done.parent} are both {row_label(result.row)} on {result.test_domain}, "
                             f"seed {result.seed} (other settings?); report them from separate folders")
        seen[cell] = str(done.parent)
        out.append(result)
    return out


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / √n; NaN with fewer than two values)."""
    a = np.asarray(values, dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")


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


def tables(results: list[Result]) -> str:
    """The markdown report: per dataset, the OOD table and the ID vs OOD table."""
    lines = [
        "# Results",
        "",
        "Accuracy (%) on the target domain's 80 % \"in\" split (`env{i}_in_acc`), checkpoint selected by",
        "training-domain validation (source domains' 20 % \"out\" splits only); mean ± standard error over seeds.",
        "ID is that selected checkpoint's source validation accuracy: the selection criterion itself, so optimistic.",
        "Image queries are what each run paid in all (mean over its runs).",
        "",
    ]
    datasets = sorted({r.dataset for r in results})
    for ds in datasets:
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
            lines.append(f"| {row_label(row)} | {fmt(ids)} | {fmt(oods)} | {gap:.1f} | {q:.0f} | {qe:.0f} | {len(oods)} |")
        lines += efficiency(rs, rows, domains)
        lines.append("")
    return "\n".join(lines)


def efficiency(rs: list[Result], rows: list[tuple[str, str, float]], domains: list[str]) -> list[str]:
    """Cached (budget-aware) vs online (every augmented view bought) on the same tasks and seeds: the
    queries each paid and the OOD accuracy each reached; the cached row is the method's largest budget."""
    online = [row for row in rows if row[1] == "online"]
    if not online:
        return []
    lines = [
        "",
        "### Cached teacher set vs online teacher (official recipe: every augmented view queried)",
        "",
        "| Method | cached: image queries | cached: OOD | online: image queries | online: OOD | queries online / cached |",
        "|---|---|---|---|---|---|",
    ]
    for row in online:
        cached = [r for r in rows if r[0] == row[0] and r[1] == "cached"]
        if not cached:
            continue
        c_rs = [r for r in rs if r.row == max(cached, key=lambda x: x[2])]
        o_rs = [r for r in rs if r.row == row]
        qc, qo = np.mean([r.queries_images for r in c_rs]), np.mean([r.queries_images for r in o_rs])
        ratio = f"{qo / qc:.1f}×" if qc else "∞"
        lines.append(
            f"| {row[0]} | {qc:.0f} | {fmt(per_seed_average(c_rs, domains))} | {qo:.0f} | {fmt(per_seed_average(o_rs, domains))} | {ratio} |"
        )
    return lines


def plot(results: list[Result], path: Path) -> Path:
    """OOD accuracy (average over target domains) against the image queries paid for training, one
    line per method, error bars = standard error over seeds. Methods that buy no image for training
    (and the teacher's zero-shot, whose queries are evaluation queries) are horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({r.dataset for r in results})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        rs = [r for r in results if r.dataset == ds]
        domains = sorted({r.test_domain for r in rs})
        lines: dict[tuple[str, str], list[tuple[float, float, float]]] = defaultdict(list)
        for row in sorted({r.row for r in rs}):
            mine = [r for r in rs if r.row == row]
            m, se = mean_se(per_seed_average(mine, domains))
            lines[(row[0], row[1])].append((float(np.mean([r.queries_images for r in mine])), m, 0.0 if np.isnan(se) else se))
        methods = sorted({method for method, _ in lines})
        for (method, mode), points in sorted(lines.items()):
            label = method + (" (online)" if mode == "online" else "") + (" (teacher)" if method == "zero_shot" else "")
            colour = plt.cm.tab10(methods.index(method) % 10)
            points.sort()
            xs, ys, es = (np.array(v) for v in zip(*points))
            if len(points) == 1 and xs[0] == 0:
                ax.axhline(100 * ys[0], linestyle=":" if method == "zero_shot" else "--", label=label, color=colour)
            else:
                marker = "o" if mode == "cached" else "*"
                ax.errorbar(xs, 100 * ys, yerr=100 * es, marker=marker, markersize=6 if mode == "cached" else 12, capsize=3, label=label, color=colour)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(left=0)  # queries are never negative; symlog would otherwise show a -10 tick
        ax.set_xlabel("image queries paid for training")
        ax.set_ylabel("OOD accuracy (%), avg over target domains")
        ax.set_title(f"{ds} (synthetic world)" if ds.startswith("synth") else ds)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(runs: str | Path, out: str | Path) -> Path:
    """Collect the finished runs under ``runs`` and write ``report.md`` and ``accuracy_vs_budget.png``."""
    results = collect(runs)
    if not results:
        raise UsageError(f"no finished runs (folders with a `done` marker) under {runs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(tables(results) + "\n![OOD accuracy vs image queries](accuracy_vs_budget.png)\n")
    plot(results, out / "accuracy_vs_budget.png")
    return out / "report.md"
