"""What a synth-pacs student is worth on classes it never saw (``docs/results/open-vocabulary.md``).

The students are a finished synth-pacs protocol's ADiP runs holding ``--target`` out (default ``sketch``), for
each of ``--seeds``, at three points of the budget axis: 0 % (no image bought), 100 % (one view of every
source image) and the online teacher. Each is exported (``vl2v export --classes``, ONNX) twice: with
synth-officehome's 26 classes, none of which it was trained on, and with those 26 *and* synth-pacs' own 7 (the
open-set variant: every image is still synth-officehome's, so a trained class predicted is wrong). Every
export is scored on every image of a rendered synth-officehome folder (``--per-class`` images per class and
domain, data seed 0; its domain ``product`` is a style synth-pacs lacks). The teacher's zero-shot accuracy is
on the same images, its image embeddings bought through the same client, with the same prompts.

It starts its own vendor (the embedded default, the reference engine, as the protocol's) on 127.0.0.1; the
exports check that it serves the model the students learnt from. Resumable: each export's scores go to
``OUT/scores/<point>-<seed>-<classes>.json``; purchases share one client cache, so a rerun pays nothing twice.

    .venv/bin/python evaluation/open_vocab_eval.py --runs results/synth-pacs/runs --out results/open-vocab
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from client_distill.buy.embed import PurchaseOrder, buy_teacher_set
from client_distill.buy.teacher_set import TeacherSet
from client_distill.buy.vendor import VendorConfig
from client_distill.data.datasets import open_dataset
from client_distill.deploy.evaluate import evaluate
from client_distill.deploy.export import export_run
from client_distill.deploy.open_vocab import buy_vocabulary
from client_distill.deploy.predict import open_model
from client_distill.report.demo import ensure_data, local_vendor
from client_distill.report.diagnostics import teacher_zero_shot
from client_distill.train.run_reader import RunReader
from shared.world import TASKS

#: the budget points whose students are exported: label -> does a run's args.json belong to it
POINTS = {
    "adip @ 0%": lambda a: a.get("teacher_mode") == "cached" and a.get("budget") == 0.0,
    "adip @ 100%": lambda a: (
        a.get("teacher_mode") == "cached" and a.get("budget") == 1.0 and (a.get("views") or 1) == 1
    ),
    "adip online": lambda a: a.get("teacher_mode") == "online",
}
WEIGHTS = ("swad.pt", "best_distill.pt", "best_align.pt", "best.pt")


def students(runs: Path, target: str, seeds: list[int]) -> dict[tuple[str, int], Path]:
    """The finished ADiP runs of each (point, seed), with their weights (a run copied without them cannot
    be exported: it is reported and left out)."""
    found: dict[tuple[str, int], Path] = {}
    for run in sorted(runs.iterdir()):
        reader = RunReader(run)
        if not reader.is_run:
            continue
        a = reader.args()
        if a.get("method") != "adip" or a.get("test_domain") != target or a.get("seed") not in seeds:
            continue
        for point, belongs in POINTS.items():
            if belongs(a) and reader.done:
                if not any((run / w).is_file() for w in WEIGHTS):
                    print(f"{run.name} ({point}, seed {a['seed']}): finished, but its weights are not here; left out")
                    continue
                found[(point, int(a["seed"]))] = run
    return found


def mean_se(values: list[float]) -> str:
    if len(values) < 2:
        return f"{100 * values[0]:.1f} ± –"
    se = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return f"{100 * float(np.mean(values)):.1f} ± {100 * se:.1f}"


def table(scores: dict[tuple[str, int, str], dict[str, Any]], domains: list[str], teacher: dict[str, dict]) -> str:
    labels = {"new": "26 synth-officehome", "union": "33: + the 7 trained synth-pacs"}
    lines = [
        "| model | classes | " + " | ".join(domains) + " | mean over domains | seeds |",
        "|---|---|" + "---|" * (len(domains) + 2),
    ]
    for point in POINTS:
        for classes, label in labels.items():
            cells = {seed: s for (p, seed, c), s in sorted(scores.items()) if p == point and c == classes}
            if not cells:
                continue
            queries = {s["image_queries"] for s in cells.values()}
            per_domain = [mean_se([s["accuracy"][d] for s in cells.values()]) for d in domains]
            overall = mean_se([float(np.mean([s["accuracy"][d] for d in domains])) for s in cells.values()])
            name = f"student: {point} ({'/'.join(f'{q:,}' for q in sorted(queries))} image queries)"
            seeds = ",".join(str(seed) for seed in sorted(cells))
            lines.append(f"| {name} | {label} | " + " | ".join(per_domain) + f" | {overall} | {seeds} |")
    for classes, label in labels.items():
        acc = teacher[classes]
        cells = " | ".join(f"{100 * acc[d]:.1f}" for d in domains)
        lines.append(f"| teacher zero-shot | {label} | {cells} | {100 * np.mean([acc[d] for d in domains]):.1f} | – |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", required=True, type=Path, help="a synth-pacs budget protocol's runs folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--target", default="sketch")
    p.add_argument("--seeds", default="0,1,2,3")
    p.add_argument("--per-class", type=int, default=30, help="synth-officehome images per class and domain")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    found = students(args.runs, args.target, seeds)
    if not found:
        raise SystemExit(f"no finished ADiP run holding {args.target} out in {args.runs}")
    new = TASKS["synth-officehome"].classes
    data = args.out / "data" / "synth-officehome"
    ensure_data(data, "synth-officehome", args.per_class, 0)
    dataset = open_dataset(data)
    (args.out / "scores").mkdir(parents=True, exist_ok=True)
    scores: dict[tuple[str, int, str], dict[str, Any]] = {}
    with local_vendor(args.out / "vendor", 10_000_000) as (url, key):
        vendor = VendorConfig(vendor="vl2v", vendor_url=url, api_key=key, cache=str(args.out / "cache"))
        for (point, seed), run in sorted(found.items()):
            trained = TeacherSet.load(RunReader(run).args()["teacher"]).classes
            for classes, names in (("new", list(new)), ("union", [*trained, *new])):
                path = args.out / "scores" / f"{point.replace(' ', '').replace('%', '')}-{seed}-{classes}.json"
                if not path.exists():
                    vocabulary = buy_vocabulary(run, names, None, vendor)
                    folder = args.out / "exports" / path.stem
                    export_run(run, folder, "onnx", vocabulary)
                    rows = evaluate(open_model(folder), dataset, dataset.domains, "all", seed)
                    record = {
                        "run": run.name,
                        "point": point,
                        "seed": seed,
                        "classes": classes,
                        "image_queries": RunReader(run).output_record()["queries_images"],
                        "prompts": vocabulary.facts["queries"],
                        "accuracy": {r.domain: r.accuracy for r in rows},
                    }
                    path.write_text(json.dumps(record, indent=2) + "\n")
                scores[(point, seed, classes)] = json.loads(path.read_text())
                print(json.dumps(scores[(point, seed, classes)]), flush=True)
        n_images = sum(len(dataset.samples(d)) for d in dataset.domains)
        order = PurchaseOrder(
            data=str(data), out=str(args.out / "teacher"), max_queries=len(new) + n_images, split="all"
        )
        teacher = buy_teacher_set(order, vendor)
    trained_texts = TeacherSet.load(RunReader(next(iter(found.values()))).args()["teacher"]).text_embeddings
    accuracy = {
        "new": teacher_zero_shot(teacher, dataset),
        "union": teacher_zero_shot(teacher, dataset, np.asarray(trained_texts)),
    }
    text = table(scores, dataset.domains, accuracy)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
