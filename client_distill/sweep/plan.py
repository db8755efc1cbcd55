"""A sweep's plan: the runs of its protocol (and of its hparam search), each a :class:`RunSpec` whose
folder is named by its arguments (:func:`run_name`), and the teacher sets they need, each a
:class:`~client_distill.buy.embed.PurchaseOrder` (:class:`Purchases`). Nothing runs here.

Methods whose training uses no teacher image (erm, lp, lp_ft, adip_text_only, zero_shot) do not
depend on the budget and run once per (target, seed). With ``embed``, the sweep buys only what its
runs use: the class prompts for every method that needs the teacher, source images only for budgeted
runs, every image only if zero-shot runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from client_distill.buy.embed import PurchaseOrder, load_templates
from client_distill.data.datasets import DomainDataset, open_dataset
from client_distill.errors import UsageError
from client_distill.methods.registry import method_class
from client_distill.sweep.config import SweepConfig
from client_distill.sweep.search import grid_points, load_search
from client_distill.train.runspec import RunSpec


def run_name(spec: RunSpec) -> str:
    """DomainBed's job name: the md5 of the run's arguments."""
    return hashlib.md5(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()


class Purchases:
    """The teacher sets a sweep with an ``embed`` section buys, only those its runs use: one per
    (budget, target, seed) over the source domains' "in" splits, one of every image of every domain
    if zero-shot runs (it predicts from the teacher's embedding of every evaluated image), and the
    class prompts alone for runs that need no bought image. Overlapping sets cost nothing twice: a
    purchase reads the client cache first, so the sweep pays at most once per distinct input.
    :attr:`orders` holds each set's :class:`~client_distill.buy.embed.PurchaseOrder` by folder."""

    def __init__(self, cfg: SweepConfig, dataset: DomainDataset):
        self.cfg, self.ds, self.root = cfg, dataset, Path(cfg.out) / "teachers"
        self.n_texts = len(dataset.classes) * len(load_templates(cfg.embed.prompts))
        self.orders: dict[str, PurchaseOrder] = {}

    def _set(self, domains: list[str], split: str, seed: int, queries: int, views: int | None = None) -> str:
        """The folder of one teacher set: named by what determines its embeddings (data, selection,
        views, prompts, the vendor's URL and model where the config names them), never by credentials
        (:meth:`~client_distill.sweep.config.EmbedConfig.identity`), so rotating an API key keeps every
        set and every finished run that uses it."""
        e = self.cfg.embed
        views = views or e.views
        key = json.dumps([domains, split, seed, queries, {**e.identity(), "views": views}], sort_keys=True, default=str)
        out = str(self.root / hashlib.md5(key.encode()).hexdigest())
        self.orders[out] = PurchaseOrder(
            data=str(self.cfg.data),
            out=out,
            max_queries=queries,
            dataset=self.cfg.dataset or None,
            domains=tuple(domains),
            strategy=e.strategy,
            student=e.student or None,
            rounds=e.rounds,
            views=views,
            prompts=e.prompts or None,
            split=split,
            seed=seed,
        )
        return out

    def budget_set(self, budget: float, target: str, seed: int, views: int | None = None) -> str:
        """The set of a ``budget`` fraction of the source images, ``views`` views each (None: embed's)."""
        sources = [d for d in self.ds.domains if d != target]
        n_in = sum(len(self.ds.split(d, seed)[0]) for d in sources)
        n_images = int(round(budget * n_in))
        views = views or self.cfg.embed.views
        return self._set(sources, "in", seed, self.n_texts + views * n_images, views) if n_images else self.texts_set()

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

    def teacher_for(
        self, method: str, mode: str, budget: float | None, domain: str, seed: int, views: int | None = None
    ) -> str | None:
        if budget is not None and float(budget) in self.teachers:
            return self.teachers[float(budget)]
        if self.purchases is None:
            return self.cfg.teacher
        if budget is not None:
            return self.purchases.budget_set(float(budget), domain, seed, views)
        return self.cfg.teacher or self.purchases.unbudgeted_set(method_class(method), mode, domain, seed)

    def spec(
        self,
        method: str,
        mode: str,
        budget: float | None,
        domain: str,
        seed: int,
        hparams: dict,
        search: dict | None,
        views: int | None = None,
    ) -> RunSpec:
        cfg = self.cfg
        return RunSpec(
            method=method,
            data=str(cfg.data),
            dataset=cfg.dataset,
            test_domain=domain,
            seed=int(seed),
            teacher=self.teacher_for(method, mode, budget, domain, int(seed), views),
            student=cfg.student,
            pretrained=cfg.pretrained,
            profile=cfg.profile,
            hparams={**cfg.hparams, **hparams},
            budget=None if budget is None else float(budget),  # with a per-budget set this labels the run
            teacher_mode=mode,
            search=search,
            views=views,
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

    def protocol(self, chosen: dict[str, dict[str, dict[str, Any]]]) -> list[RunSpec]:
        """Every protocol run, in a stable order, seed by seed (all of seed 0 first, then seed 1, ...): a sweep
        stopped part way has whole seeds of every table cell to report, not every seed of its first methods;
        ``chosen[method][target]`` is its search summary, if any."""
        cfg, specs = self.cfg, []
        for method in cfg.methods:
            cls = method_class(method)
            online_ok = method in (cfg.online_methods if cfg.online_methods is not None else cfg.methods)
            for mode in (
                [m for m in cfg.teacher_modes if m == "cached" or online_ok] if cls.uses_teacher_images else ["cached"]
            ):
                budgets: list[float | None] = (
                    list(cfg.budgets or [None]) if cls.uses_teacher_images and mode == "cached" else [None]
                )
                if not cls.learns_without_images:  # nothing to learn from 0 image queries
                    budgets = [b for b in budgets if b is None or b > 0]
                points: list[tuple[float | None, int | None]] = [(b, None) for b in budgets]
                if cls.uses_teacher_images and mode == "cached":
                    points += [(1.0, v) for v in cfg.more_views]  # every source image, more views of each
                for budget, views in points:
                    for domain in self.domains(cfg.test_domains):
                        search = chosen.get(method, {}).get(domain)
                        hparams = dict(search["chosen"]) if search else {}
                        for seed in cfg.seeds:
                            specs.append(self.spec(method, mode, budget, domain, seed, hparams, search, views))
        return sorted(specs, key=lambda spec: cfg.seeds.index(spec.seed))


def plan_sweep(
    cfg: SweepConfig, chosen: dict[str, dict[str, dict[str, Any]]] | None = None
) -> tuple[list[RunSpec], dict[str, PurchaseOrder]]:
    """The protocol's runs (with ``chosen`` search summaries by method and target, or those of
    ``searched``) and the purchases (by teacher-set folder) that buy what they need."""
    planner = Planner(cfg)
    if chosen is None:
        chosen = load_search(cfg.searched) if cfg.searched else {}
    # the same search for every method and target, or none: never some searched and some not
    unsearched = [
        f"{m} on {d}"
        for m in planner.searched_methods()
        for d in planner.domains(cfg.test_domains)
        if chosen and d not in chosen.get(m, {})
    ]
    if unsearched:
        raise UsageError(
            f"no search result for {', '.join(unsearched)} in {cfg.searched or 'the search'}; search them too"
        )
    specs = planner.protocol(chosen)
    return specs, planner.purchases.orders if planner.purchases else {}


#: how much longer an online run takes than a cached one: the vendor embeds every augmented view
#: (measured on 2 cores: ADiP 70 s cached, 180-210 s online)
ONLINE_COST = 3


def expected_cost(spec: RunSpec) -> int:
    """A run's cost in single-stage cached runs, for scheduling: its stages, times more online."""
    return len(method_class(spec.method).stages) * (ONLINE_COST if spec.teacher_mode == "online" else 1)
