"""``vl2v sweep``: methods × budgets × target domains × seeds, DomainBed style.

Each run's folder is the md5 of its arguments, so a relaunched sweep skips finished runs (their
``done`` marker) and resumes unfinished ones from their last checkpoint. Each run is a ``vl2v distill``
in its own process, forked from a server that imported torch once (:mod:`client_distill.launcher`);
``--workers N`` at a time, threads split between them.

Config (YAML)::

    data: data/synth-pacs          # DomainBed-layout folder
    dataset: synth-pacs            # optional known name
    student: vl2v-photo-resnet
    teacher: teachers/full         # a teacher set with every image bought; budgets subsample it
    teachers: {0.1: teachers/b10}  # optional: a teacher set per budget, bought by `vl2v embed`
    embed:                         # optional: the sweep buys its teacher sets itself with `vl2v embed`
      vendor_args: [--vendor-url, http://127.0.0.1:8000, --api-key, KEY]
      strategy: random             # or class_balanced, kcenter (see `vl2v embed --help`)
      views: 1
      cache: ~/.cache/vl2v/embeddings
    methods: [zero_shot, erm, kd, adip, adip_image_only, adip_text_only, adip_joint]
    budgets: [0, 0.1, 0.25, 0.5, 1.0]   # fractions of the source images with a teacher embedding
    test_domains: all              # or a list
    seeds: [0, 1, 2]
    profile: synth
    hparams: {steps: 300}
    teacher_modes: [cached]        # add `online` (with vendor_args) for the efficiency comparison
    online_methods: [adip, kd]     # optional: only these methods also run online (default: all that query)
    vendor_args: [--vendor-url, http://127.0.0.1:8000, --api-key, KEY]
    out: runs/synth-pacs

Methods whose training uses no teacher image (erm, lp, lp_ft, adip_text_only, zero_shot) do not
depend on the budget and run once per (target, seed). With ``embed``, the sweep buys only what its
runs use (see :class:`Purchases`): the class prompts for every method that needs the teacher, source
images only for budgeted runs, every image only if zero-shot runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from client_distill.datasets import open_dataset
from client_distill.embed import load_templates
from client_distill.errors import UsageError
from client_distill.launcher import RunPool
from client_distill.methods import METHODS
from client_distill.train import TEACHER_MODES, RunSpec

KNOWN_KEYS = {
    "data", "dataset", "student", "pretrained", "teacher", "teachers", "methods", "budgets", "test_domains",
    "seeds", "profile", "hparams", "teacher_modes", "online_methods", "vendor_args", "embed", "out",
    "demo",  # settings of `vl2v demo` (data size, key budget); the sweep itself ignores them
}  # fmt: skip


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read and check a sweep config; ``overrides`` (e.g. ``data``/``out`` chosen by ``vl2v demo``)
    replace the file's keys before the check."""
    try:
        cfg = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read sweep config {path}: {exc}") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"{path}: a sweep config is a YAML mapping")
    cfg.update(overrides or {})
    unknown = set(cfg) - KNOWN_KEYS
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(KNOWN_KEYS))}")
    for key in ("data", "methods", "out"):
        if key not in cfg:
            raise UsageError(f"{path}: missing required key {key!r}")
    return cfg


def run_name(spec: RunSpec) -> str:
    """DomainBed's job name: the md5 of the run's arguments."""
    return hashlib.md5(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()


def _embed_argv(cfg: dict[str, Any], out: Path, domains: list[str], split: str, seed: int, queries: int) -> list[str]:
    """The ``vl2v`` arguments that buy one teacher set (config key ``embed``)."""
    e = cfg["embed"]
    argv = ["embed", "--data", str(cfg["data"]), "--domains", ",".join(domains)]
    argv += ["--split", split, "--seed", str(seed), "--budget", str(queries), "--strategy", e.get("strategy", "random")]
    argv += ["--views", str(e.get("views", 1)), "--out", str(out), *[str(a) for a in e.get("vendor_args", [])]]
    for key in ("dataset", "prompts", "cache", "student"):
        value = cfg.get(key) if key == "dataset" else e.get(key)
        if value:
            argv += [f"--{key}", str(value)]
    return argv


class Purchases:
    """The teacher sets a sweep with an ``embed`` section buys, only those its runs use: one per
    (budget, target, seed) over the source domains' "in" splits, one of every image of every domain
    if zero-shot runs (it predicts from the teacher's embedding of every evaluated image), and the
    class prompts alone for runs that need no bought image. Overlapping sets cost nothing twice:
    ``vl2v embed`` reads the client cache first, so the sweep pays at most once per distinct input."""

    def __init__(self, cfg: dict[str, Any], dataset):
        self.cfg, self.ds, self.root = cfg, dataset, Path(cfg["out"]) / "teachers"
        self.n_texts = len(dataset.classes) * len(load_templates(cfg["embed"].get("prompts")))
        self.views = int(cfg["embed"].get("views", 1))
        self.argv: dict[str, list[str]] = {}

    def _set(self, domains: list[str], split: str, seed: int, queries: int) -> str:
        key = json.dumps([domains, split, seed, queries, self.cfg["embed"]], sort_keys=True, default=str)
        out = self.root / hashlib.md5(key.encode()).hexdigest()
        self.argv[str(out)] = _embed_argv(self.cfg, out, domains, split, seed, queries)
        return str(out)

    def budget_set(self, budget: float, target: str, seed: int) -> str:
        sources = [d for d in self.ds.domains if d != target]
        n_in = sum(len(self.ds.split(d, seed)[0]) for d in sources)
        n_images = int(round(budget * n_in))
        return self._set(sources, "in", seed, self.n_texts + self.views * n_images) if n_images else self.texts_set()

    def full_set(self) -> str:
        n_all = sum(len(self.ds.samples(d)) for d in self.ds.domains)
        return self._set(list(self.ds.domains), "all", 0, self.n_texts + n_all)

    def texts_set(self) -> str:
        return self._set(list(self.ds.domains), "all", 0, self.n_texts)

    def unbudgeted_set(self, method: type, mode: str, target: str, seed: int) -> str | None:
        """What a run without a budget uses: every image for zero-shot; every source image for a
        cached run that trains on teacher images (a budget of 1); the prompts alone where training
        uses no teacher image, or buys its own (online); nothing for a method that ignores the teacher."""
        if method.needs_teacher_at_eval:
            return self.full_set()
        if method.uses_teacher_images and mode == "cached":
            return self.budget_set(1.0, target, seed)
        return self.texts_set() if method.needs_text else None


def plan_sweep(cfg: dict[str, Any]) -> tuple[list[RunSpec], dict[str, list[str]]]:
    """Every run the config asks for, in a stable order, and the ``vl2v embed`` commands (by teacher
    set folder) that buy the teacher sets they need when the config has an ``embed`` section."""
    unknown = [m for m in cfg["methods"] if m not in METHODS]
    if unknown:
        raise UsageError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(sorted(METHODS))}")
    ds = open_dataset(cfg["data"], cfg.get("dataset"))
    domains = ds.domains if cfg.get("test_domains", "all") == "all" else cfg["test_domains"]
    teachers = {float(k): str(v) for k, v in (cfg.get("teachers") or {}).items()}
    purchases = Purchases(cfg, ds) if cfg.get("embed") else None
    modes = cfg.get("teacher_modes", ["cached"])
    if any(m not in TEACHER_MODES for m in modes):
        raise UsageError(f"teacher_modes must be among {TEACHER_MODES}")

    def teacher_for(method: str, mode: str, budget: float | None, domain: str, seed: int) -> str | None:
        if budget is not None and float(budget) in teachers:
            return teachers[float(budget)]
        if purchases is None:
            return cfg.get("teacher")
        if budget is not None:
            return purchases.budget_set(float(budget), domain, seed)
        return cfg.get("teacher") or purchases.unbudgeted_set(METHODS[method], mode, domain, seed)

    specs = []
    for method in cfg["methods"]:
        uses_images = METHODS[method].uses_teacher_images
        online_ok = method in cfg.get("online_methods", cfg["methods"])
        for mode in [m for m in modes if m == "cached" or online_ok] if uses_images else ["cached"]:
            budgets = cfg.get("budgets", [None]) if uses_images and mode == "cached" else [None]
            if not METHODS[method].learns_without_images:  # nothing to learn from 0 image queries
                budgets = [b for b in budgets if b is None or float(b) > 0]
            for budget in budgets:
                for domain in domains:
                    for seed in cfg.get("seeds", [0]):
                        specs.append(
                            RunSpec(
                                method=method,
                                data=str(cfg["data"]),
                                dataset=cfg.get("dataset"),
                                test_domain=domain,
                                seed=int(seed),
                                teacher=teacher_for(method, mode, budget, domain, int(seed)),
                                student=cfg.get("student", RunSpec.student),
                                pretrained=bool(cfg.get("pretrained", True)),
                                profile=cfg.get("profile", "paper"),
                                hparams=dict(cfg.get("hparams") or {}),
                                # with a per-budget set this keeps all of it (it holds that fraction) and labels the run
                                budget=None if budget is None else float(budget),
                                teacher_mode=mode,
                            )
                        )
    return specs, purchases.argv if purchases else {}


def expand(cfg: dict[str, Any]) -> list[RunSpec]:
    """Every run the config asks for."""
    return plan_sweep(cfg)[0]


def buy_teacher_sets(purchases: dict[str, list[str]], needed: set[str]) -> None:
    """Run ``vl2v embed`` for every needed teacher set not complete yet, one at a time: sets of a
    sweep overlap, and two concurrent purchases could both miss the client cache for the same image
    and pay for it twice; one after the other, every image is paid for once."""
    todo = [out for out in purchases if out in needed and not _complete(Path(out))]
    with RunPool(1) as pool:
        for out in tqdm(todo, desc="buying teacher sets", unit="set", disable=not todo):
            if pool.submit(purchases[out], Path(out), 0).result() != 0 or not _complete(Path(out)):
                raise UsageError(f"buying teacher set {out} failed; see {out}/log.txt")


def _complete(teacher_set: Path) -> bool:
    manifest = teacher_set / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("complete", True) is not False


def distill_argv(spec: RunSpec, out: Path, vendor_args: list[str]) -> list[str]:
    """The ``vl2v`` arguments of one run."""
    argv = ["distill", "--method", spec.method, "--data", spec.data]
    argv += ["--test-domain", spec.test_domain, "--seed", str(spec.seed), "--student", spec.student]
    argv += ["--profile", spec.profile, "--hparams", json.dumps(spec.hparams), "--teacher-mode", spec.teacher_mode, "--out", str(out)]
    if spec.dataset:
        argv += ["--dataset", spec.dataset]
    if spec.teacher:
        argv += ["--teacher", spec.teacher]
    if spec.budget is not None:
        argv += ["--budget", str(spec.budget)]
    if not spec.pretrained:
        argv += ["--no-pretrained"]
    if spec.teacher_mode == "online":
        argv += vendor_args
    return argv


def run_sweep(cfg: dict[str, Any], workers: int = 1, dry_run: bool = False) -> dict[str, list[str]]:
    """Launch every unfinished run; returns the run folders by outcome (done / skipped / failed; with
    ``dry_run`` nothing is launched and ``todo`` lists what would be)."""
    root = Path(cfg["out"])
    specs, purchases = plan_sweep(cfg)
    todo, outcome = [], {"done": [], "skipped": [], "failed": []}
    for spec in specs:
        out = root / run_name(spec)
        if (out / "done").is_file():
            outcome["skipped"].append(str(out))
        else:
            todo.append((spec, out))
    if dry_run:
        for spec, out in todo:
            print(out, "vl2v", " ".join(distill_argv(spec, out, [])))
        return {**outcome, "todo": [str(out) for _, out in todo]}
    buy_teacher_sets(purchases, {spec.teacher for spec, _ in todo})
    todo.sort(key=lambda item: item[0].seed)  # seed by seed: a sweep cut short has every method for its first seeds
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    vendor_args = [str(a) for a in cfg.get("vendor_args", [])]
    with RunPool(workers) as pool:
        futures = {pool.submit(distill_argv(spec, out, vendor_args), out, threads): out for spec, out in todo}
        bar = tqdm(as_completed(futures), total=len(futures), desc=f"sweep ({len(outcome['skipped'])} already done)", unit="run")
        try:
            for future in bar:
                out = futures[future]
                outcome["done" if future.result() == 0 and (out / "done").is_file() else "failed"].append(str(out))
        except KeyboardInterrupt:
            # start no queued run; the runs in flight got the same Ctrl-C (one process group) and
            # stop at once, resumable
            pool.cancel()
            raise
    return outcome
