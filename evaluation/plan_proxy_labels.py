"""Would a labels-only point fix the plan's proxy? (issue 22; ``docs/results/plan.md``)

On synth-pacs the plan keeps recommending images that the full ADiP runs do not need (their target accuracy
at 0 % of the images equals that at 100 %). One suspect: the proxy has no "labels only" point, though a
client has every label for free, and ADiP at 0 % trains against the class prompts. This measures the plan's
proxy (:func:`~client_distill.sweep.budget_plan.short_run`: a linear map from the frozen student's features,
100 steps, scored against the class prompts on the source left out, averaged over the sources) per
(target, seed) cell of a budget protocol, on the protocol's own 100 % teacher sets, with four kinds of
training targets on the same images:

- ``teacher_all``: every source image's teacher embedding (buying everything);
- ``labels_only``: every image's class-prompt embedding (buying nothing);
- ``pilot_teacher``: the teacher's embeddings of a random 10 % only (the plan's pilot point);
- ``pilot_mixed``: the teacher's for that 10 %, the class prompt's for the rest.

    .venv/bin/python evaluation/plan_proxy_labels.py --runs /work/runs/synth-pacs/runs --data /work/runs/synth-pacs/data

No vendor: it reads the teacher sets the protocol bought (``RUNS/teachers``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import open_dataset
from client_distill.sweep.budget_plan import short_run
from client_distill.train.probe import student_features

VARIANTS = ("teacher_all", "labels_only", "pilot_teacher", "pilot_mixed")


def full_sets(runs: Path) -> dict[tuple[tuple[str, ...], int], Path]:
    """Per (sources, seed), the protocol's complete one-view teacher set that bought the most images (the
    100 % budget: every source image of the "in" split)."""
    best: dict[tuple[tuple[str, ...], int], tuple[int, Path]] = {}
    for manifest in (runs / "teachers").glob("*/manifest.json"):
        meta = json.loads(manifest.read_text())
        if meta.get("views") == 1 and meta.get("split") == "in" and meta.get("complete"):
            key, bought = (tuple(meta["domains"]), int(meta["seed"])), meta["queries"]["image_queries_bought"]
            if bought > best.get(key, (0, manifest.parent))[0]:
                best[key] = (bought, manifest.parent)
    return {key: folder for key, (_, folder) in best.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, required=True, help="a budget protocol's run folder")
    p.add_argument("--data", type=Path, required=True, help="its dataset folder")
    p.add_argument("--student", default="vl2v-photo-half")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=100, help="the short runs' steps (the plan's default)")
    args = p.parse_args()
    torch.set_num_threads(1)
    dataset = open_dataset(args.data)
    everything = [s for d in dataset.domains for s in dataset.samples(d)]
    row = {s.path: i for i, s in enumerate(everything)}
    x = torch.from_numpy(np.asarray(student_features(dataset.root, args.student)(everything), np.float32))
    sets = full_sets(args.runs)
    cells = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for target in dataset.domains:
            sources = tuple(d for d in dataset.domains if d != target)
            if (sources, seed) not in sets:
                continue
            teacher = TeacherSet.load(sets[(sources, seed)])
            text = torch.nn.functional.normalize(
                torch.from_numpy(np.asarray(teacher.text_embeddings, np.float32)), dim=1
            )
            paths = sorted(teacher.image_embeddings)
            pilot = set(np.random.default_rng(seed).choice(paths, size=len(paths) // 10, replace=False))
            scores: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for held in sources:
                train = [q for q in paths if everything[row[q]].domain != held]
                test = [i for i, s in enumerate(everything) if s.domain == held]
                test_y = torch.tensor([everything[i].label for i in test])
                labels = text[torch.tensor([everything[row[q]].label for q in train])]
                teach = torch.from_numpy(np.stack([teacher.image_embeddings[q][0] for q in train]).astype(np.float32))
                chosen = torch.tensor([q in pilot for q in train])
                targets = {
                    "teacher_all": (train, teach),
                    "labels_only": (train, labels),
                    "pilot_teacher": ([q for q, c in zip(train, chosen, strict=True) if c], teach[chosen]),
                    "pilot_mixed": (train, torch.where(chosen[:, None], teach, labels)),
                }
                for name, (images, y) in targets.items():
                    scores[name].append(short_run(x[[row[q] for q in images]], y, x[test], test_y, text, args.steps))
            cell = {v: 100 * float(np.mean(s)) for v, s in scores.items()}
            cells.append(cell)
            print(json.dumps({"target": target, "seed": seed, **{k: round(v, 1) for k, v in cell.items()}}), flush=True)
    for name in VARIANTS:
        v = np.array([c[name] for c in cells])
        print(f"{name}: {v.mean():.1f} ± {v.std(ddof=1) / np.sqrt(len(v)):.1f} (proxy accuracy, {len(v)} cells)")
    for a, b in (("teacher_all", "labels_only"), ("pilot_mixed", "labels_only")):
        d = np.array([c[a] - c[b] for c in cells])
        print(f"{a} − {b}: {d.mean():+.1f} ± {d.std(ddof=1) / np.sqrt(len(d)):.1f} points")


if __name__ == "__main__":
    main()
