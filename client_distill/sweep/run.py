"""``vl2v sweep``: methods × budgets × target domains × seeds, DomainBed style, with its hparam search.

The config is :class:`~client_distill.sweep.config.SweepConfig` (its docstring shows every key). A
sweep with a ``search`` first runs every method's candidates (the grid, on the search's targets and
seeds), chooses each method's hparams on source validation (:mod:`client_distill.sweep.search`) and writes
``OUT/search.json``; then it runs the protocol with those values. ``searched`` takes the choice of an
earlier search of the same task instead.

Each run's folder is the md5 of its arguments, so a relaunched sweep skips finished runs (their
``done`` marker) and resumes unfinished ones from their last checkpoint. Each run is a process forked
from a server that imported torch once (:mod:`client_distill.sweep.launch`), given its RunSpec directly;
``--workers N`` at a time, threads split between them. ``--launcher ray`` runs them as Ray tasks
instead (:mod:`client_distill.sweep.ray_pool`), on a local Ray instance or a cluster; teacher sets are
still bought here, before any run starts.

Methods whose training uses no teacher image (erm, lp, lp_ft, adip_text_only, zero_shot) do not
depend on the budget and run once per (target, seed). With ``embed``, the sweep buys only what its
runs use (see :class:`Purchases`): the class prompts for every method that needs the teacher, source
images only for budgeted runs, every image only if zero-shot runs.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from client_distill.buy.embed import load_templates
from client_distill.commands.distill import sweep_job
from client_distill.data.datasets import DomainDataset, open_dataset
from client_distill.errors import UsageError
from client_distill.methods.registry import method_class
from client_distill.sweep.config import SweepConfig
from client_distill.sweep.launch import LaunchOptions, RunPool, open_launcher
from client_distill.sweep.search import grid_points, load_search, summary, write_search
from client_distill.train.run_reader import RunReader
from client_distill.train.runspec import RunSpec

SEARCH_FILE = "search.json"


def run_name(spec: RunSpec) -> str:
    """DomainBed's job name: the md5 of the run's arguments."""
    return hashlib.md5(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()


def _embed_argv(cfg: SweepConfig, out: Path, domains: list[str], split: str, seed: int, queries: int) -> list[str]:
    """The ``vl2v`` arguments that buy one teacher set (config key ``embed``)."""
    e = cfg.embed
    argv = ["embed", "--data", str(cfg.data), "--domains", ",".join(domains)]
    argv += ["--split", split, "--seed", str(seed), "--max-queries", str(queries), "--strategy", e.strategy]
    argv += ["--views", str(e.views), "--out", str(out), *[str(a) for a in e.vendor_args]]
    for key, value in (("dataset", cfg.dataset), ("prompts", e.prompts), ("cache", e.cache), ("student", e.student)):
        if value:
            argv += [f"--{key}", str(value)]
    return argv


#: vendor options whose value is a secret: left out of anything hashed or written
SECRET_OPTIONS = ("--api-key",)


def public_vendor_args(argv: list[str]) -> list[str]:
    """``argv`` without the values of :data:`SECRET_OPTIONS` (``--api-key K`` and ``--api-key=K``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in SECRET_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in SECRET_OPTIONS)):
            out.append(arg)
    return out


class Purchases:
    """The teacher sets a sweep with an ``embed`` section buys, only those its runs use: one per
    (budget, target, seed) over the source domains' "in" splits, one of every image of every domain
    if zero-shot runs (it predicts from the teacher's embedding of every evaluated image), and the
    class prompts alone for runs that need no bought image. Overlapping sets cost nothing twice:
    ``vl2v embed`` reads the client cache first, so the sweep pays at most once per distinct input."""

    def __init__(self, cfg: SweepConfig, dataset: DomainDataset):
        self.cfg, self.ds, self.root = cfg, dataset, Path(cfg.out) / "teachers"
        self.n_texts = len(dataset.classes) * len(load_templates(cfg.embed.prompts))
        self.argv: dict[str, list[str]] = {}

    def _set(self, domains: list[str], split: str, seed: int, queries: int) -> str:
        """The folder of one teacher set: named by what determines its embeddings (data, selection,
        views, prompts, the vendor's URL and model where the config names them), never by credentials,
        so rotating an API key keeps every set and every finished run that uses it."""
        embed = self.cfg.embed.model_dump()
        embed["vendor_args"] = public_vendor_args(embed["vendor_args"])
        key = json.dumps([domains, split, seed, queries, embed], sort_keys=True, default=str)
        out = self.root / hashlib.md5(key.encode()).hexdigest()
        self.argv[str(out)] = _embed_argv(self.cfg, out, domains, split, seed, queries)
        return str(out)

    def budget_set(self, budget: float, target: str, seed: int) -> str:
        sources = [d for d in self.ds.domains if d != target]
        n_in = sum(len(self.ds.split(d, seed)[0]) for d in sources)
        n_images = int(round(budget * n_in))
        return (
            self._set(sources, "in", seed, self.n_texts + self.cfg.embed.views * n_images)
            if n_images
            else self.texts_set()
        )

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


class Planner:
    """Turns a config into RunSpecs: the search's candidates and the protocol's runs."""

    def __init__(self, cfg: SweepConfig):
        self.cfg = cfg
        self.ds = open_dataset(cfg.data, cfg.dataset)
        self.purchases = Purchases(cfg, self.ds) if cfg.embed else None
        self.teachers = {float(k): str(v) for k, v in cfg.teachers.items()}

    def domains(self, which: str | list[str]) -> list[str]:
        domains = self.ds.domains if which == "all" else list(which)
        for d in domains:
            self.ds.domain_index(d)  # an unknown domain is a user error before anything runs
        return domains

    def teacher_for(self, method: str, mode: str, budget: float | None, domain: str, seed: int) -> str | None:
        if budget is not None and float(budget) in self.teachers:
            return self.teachers[float(budget)]
        if self.purchases is None:
            return self.cfg.teacher
        if budget is not None:
            return self.purchases.budget_set(float(budget), domain, seed)
        return self.cfg.teacher or self.purchases.unbudgeted_set(method_class(method), mode, domain, seed)

    def spec(
        self, method: str, mode: str, budget: float | None, domain: str, seed: int, hparams: dict, search: dict | None
    ) -> RunSpec:
        cfg = self.cfg
        return RunSpec(
            method=method,
            data=str(cfg.data),
            dataset=cfg.dataset,
            test_domain=domain,
            seed=int(seed),
            teacher=self.teacher_for(method, mode, budget, domain, int(seed)),
            student=cfg.student,
            pretrained=cfg.pretrained,
            profile=cfg.profile,
            hparams={**cfg.hparams, **hparams},
            budget=None if budget is None else float(budget),  # with a per-budget set this labels the run
            teacher_mode=mode,
            search=search,
        )

    def searched_methods(self) -> list[str]:
        """The methods a search tunes: every method that trains."""
        return [m for m in self.cfg.methods if method_class(m).stages]

    def candidates(self) -> dict[str, list[tuple[dict[str, Any], list[RunSpec]]]]:
        """Per method, each grid point and its runs (cached mode, the search's budget for methods that
        buy images)."""
        search = self.cfg.search
        out = {}
        for method in self.searched_methods():
            budget = search.budget if method_class(method).uses_teacher_images else None
            out[method] = [
                (
                    point,
                    [
                        self.spec(method, "cached", budget, d, s, point, {"candidate": point})
                        for d in self.domains(search.test_domains)
                        for s in search.seeds
                    ],
                )
                for point in grid_points(search.grid)
            ]
        return out

    def protocol(self, chosen: dict[str, dict[str, Any]]) -> list[RunSpec]:
        """Every protocol run, in a stable order; ``chosen[method]`` is its search summary, if any."""
        cfg, specs = self.cfg, []
        for method in cfg.methods:
            cls = method_class(method)
            online_ok = method in (cfg.online_methods if cfg.online_methods is not None else cfg.methods)
            search = chosen.get(method)
            hparams = dict(search["chosen"]) if search else {}
            for mode in (
                [m for m in cfg.teacher_modes if m == "cached" or online_ok] if cls.uses_teacher_images else ["cached"]
            ):
                budgets: list[float | None] = (
                    list(cfg.budgets or [None]) if cls.uses_teacher_images and mode == "cached" else [None]
                )
                if not cls.learns_without_images:  # nothing to learn from 0 image queries
                    budgets = [b for b in budgets if b is None or b > 0]
                for budget in budgets:
                    for domain in self.domains(cfg.test_domains):
                        for seed in cfg.seeds:
                            specs.append(self.spec(method, mode, budget, domain, seed, hparams, search))
        return specs


def plan_sweep(
    cfg: SweepConfig, chosen: dict[str, dict[str, Any]] | None = None
) -> tuple[list[RunSpec], dict[str, list[str]]]:
    """The protocol's runs (with ``chosen`` search summaries, or those of ``searched``) and the
    ``vl2v embed`` commands (by teacher-set folder) that buy what they need."""
    planner = Planner(cfg)
    if chosen is None:
        chosen = load_search(cfg.searched) if cfg.searched else {}
    unsearched = [m for m in planner.searched_methods() if chosen and m not in chosen]
    if unsearched:  # the same search for every method, or none: never some searched and some not
        raise UsageError(
            f"no search result for {', '.join(unsearched)} in {cfg.searched or 'the search'}; search them too"
        )
    specs = planner.protocol(chosen)
    return specs, planner.purchases.argv if planner.purchases else {}


#: how much longer an online run takes than a cached one: the vendor embeds every augmented view
#: (measured on 2 cores: ADiP 70 s cached, 180-210 s online)
ONLINE_COST = 3


def expected_cost(spec: RunSpec) -> int:
    """A run's cost in single-stage cached runs, for scheduling: its stages, times more online."""
    return len(method_class(spec.method).stages) * (ONLINE_COST if spec.teacher_mode == "online" else 1)


def buy_teacher_sets(purchases: dict[str, list[str]], needed: set[str]) -> None:
    """Run ``vl2v embed`` for every needed teacher set not complete yet, one at a time: sets of a
    sweep overlap, and two concurrent purchases could both miss the client cache for the same image
    and pay for it twice; one after the other, every image is paid for once."""
    from client_distill.cli import main as vl2v

    todo = [out for out in purchases if out in needed and not _complete(Path(out))]
    with RunPool(1) as pool:
        for out in tqdm(todo, desc="buying teacher sets", unit="set", disable=not todo):
            if pool.submit(vl2v, (purchases[out],), Path(out), 0).result() != 0 or not _complete(Path(out)):
                raise UsageError(f"buying teacher set {out} failed; see {out}/log.txt")


def _complete(teacher_set: Path) -> bool:
    manifest = teacher_set / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("complete", True) is not False


def execute(
    cfg: SweepConfig, specs: list[RunSpec], purchases: dict[str, list[str]], launch: LaunchOptions, desc: str
) -> dict[str, list[str]]:
    """Run every unfinished spec on the launcher ``launch`` names, ``launch.threads`` torch threads
    each (default: the launcher's); the run folders by outcome (done / skipped / failed)."""
    root = Path(cfg.out)
    todo, outcome = [], {"done": [], "skipped": [], "failed": []}
    for spec in specs:
        out = root / run_name(spec)
        (outcome["skipped"].append(str(out)) if RunReader(out).done else todo.append((spec, out)))
    buy_teacher_sets(purchases, {spec.teacher for spec, _ in todo})
    # seed by seed (a sweep cut short has every method for its first seeds), longest first within a
    # seed (so the long runs do not start last and leave the other workers idle at the end)
    todo.sort(key=lambda item: (item[0].seed, -expected_cost(item[0])))
    vendor_args = [str(a) for a in cfg.vendor_args]
    with open_launcher(launch) as pool:
        futures = {pool.submit(sweep_job, (spec, str(out), vendor_args), out, pool.threads): out for spec, out in todo}
        bar = tqdm(
            as_completed(futures),
            total=len(futures),
            desc=f"{desc} ({len(outcome['skipped'])} already done)",
            unit="run",
        )
        try:
            for future in bar:
                out = futures[future]
                outcome["done" if future.result() == 0 and RunReader(out).done else "failed"].append(str(out))
        except KeyboardInterrupt:
            # start no queued run; the runs in flight got the same Ctrl-C (one process group) and
            # stop at once, resumable
            pool.cancel()
            raise
    return outcome


def run_search(cfg: SweepConfig, launch: LaunchOptions) -> dict[str, dict[str, Any]]:
    """Run the search's candidates and choose each method's hparams; writes ``OUT/search.json``."""
    planner = Planner(cfg)
    candidates = planner.candidates()
    specs = [spec for points in candidates.values() for _, runs in points for spec in runs]
    outcome = execute(cfg, specs, planner.purchases.argv if planner.purchases else {}, launch, "hparam search")
    if outcome["failed"]:
        raise UsageError(
            f"{len(outcome['failed'])} search run(s) failed, e.g. {outcome['failed'][0]}/log.txt; fix and rerun"
        )
    root, chosen = Path(cfg.out), {}
    for method, points in candidates.items():
        scores = [[RunReader(root / run_name(s)).output_record()["source_val_acc"] for s in runs] for _, runs in points]
        chosen[method] = summary(cfg.search.grid, method, [p for p, _ in points], scores)
    write_search(root / SEARCH_FILE, chosen)
    return chosen


def run_sweep(
    cfg: SweepConfig,
    workers: int = 1,
    dry_run: bool = False,
    threads: int | None = None,
    launcher: str = "local",
    address: str | None = None,
) -> dict[str, list[str]]:
    """Search (if the config has one), then launch every unfinished protocol run on ``launcher``
    (:data:`client_distill.sweep.launch.LAUNCHERS`; ``address``: the Ray cluster's); returns the run
    folders by outcome (done / skipped / failed; with ``dry_run`` nothing is launched and ``todo``
    lists what would be: the search's candidates, or the protocol's runs when there is no search)."""
    if dry_run:
        planner = Planner(cfg)
        specs = (
            [s for points in planner.candidates().values() for _, runs in points for s in runs]
            if cfg.search
            else plan_sweep(cfg)[0]
        )
        todo = [str(Path(cfg.out) / run_name(s)) for s in specs if not RunReader(Path(cfg.out) / run_name(s)).done]
        for out in todo:
            print(out)
        return {
            "todo": todo,
            "skipped": [
                str(Path(cfg.out) / run_name(s)) for s in specs if str(Path(cfg.out) / run_name(s)) not in todo
            ],
        }
    launch = LaunchOptions(launcher, workers, threads, address)
    chosen = run_search(cfg, launch) if cfg.search else None
    specs, purchases = plan_sweep(cfg, chosen)
    return execute(cfg, specs, purchases, launch, "sweep")
