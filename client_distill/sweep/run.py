"""``vl2v sweep``: methods × budgets × target domains × seeds, DomainBed style, with its hparam search.

The config is :class:`~client_distill.sweep.config.SweepConfig` (its docstring shows every key). A
sweep with a ``search`` first runs every method's candidates (the grid, on the search's targets and
seeds), chooses each method's hparams on source validation (:mod:`client_distill.sweep.search`) and writes
``OUT/search.json``; then it runs the protocol with those values. ``searched`` takes the choice of an
earlier search of the same task instead.

The plan (the runs, and the teacher sets they need) is :mod:`client_distill.sweep.plan`'s. Each run's
folder is the md5 of its arguments, so a relaunched sweep skips finished runs (their ``done`` marker)
and resumes unfinished ones from their last checkpoint. Teacher sets are bought first, here, one at a
time (:func:`buy_teacher_sets`); then each run is a process forked from a server that imported torch
once (:mod:`client_distill.sweep.local`), given its RunSpec directly (:mod:`client_distill.sweep.jobs`);
``--workers N`` at a time, threads split between them. ``--launcher ray`` runs them as Ray tasks instead
(:mod:`client_distill.sweep.ray_pool`), on a local Ray instance or a cluster.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from client_distill.buy.embed import PurchaseOrder
from client_distill.buy.vendor import VendorConfig
from client_distill.errors import UsageError
from client_distill.sweep.config import SweepConfig
from client_distill.sweep.jobs import distill_job, purchase_job
from client_distill.sweep.launch import LaunchOptions
from client_distill.sweep.launchers import open_launcher
from client_distill.sweep.local import RunPool
from client_distill.sweep.plan import Planner, expected_cost, plan_sweep, run_name
from client_distill.sweep.search import summary, write_search
from client_distill.train.run_reader import RunReader
from client_distill.train.runspec import RunSpec

SEARCH_FILE = "search.json"


def buy_teacher_sets(
    orders: dict[str, PurchaseOrder], needed: set[str], vendor: VendorConfig, run_threads: int | None = None
) -> None:
    """Buy every needed teacher set not complete yet from ``vendor``, one at a time, each in a process
    of its own (output to the set's ``log.txt``): sets of a sweep overlap, and two concurrent purchases
    could both miss the client cache for the same image and pay for it twice; one after the other,
    every image is paid for once. A complete set bought from other weights than the vendor serves now
    is refused: the sweep's runs would learn from two teachers (and a zero-shot run would score the old
    one).

    ``run_threads``: the torch threads of the runs that follow. The purchases' processes come from the
    same fork server as the runs, and the first of them starts it: it compiles the augmentation for this
    count then (:mod:`client_distill.train.compiled`), and a run with another count augments eagerly:
    until 2026-12-07 a sweep that bought sets did so in a pool of one worker, which announced every core
    (two), so a sweep of two workers (one thread each) ran all its runs eagerly, with the same pixels."""
    todo = [out for out in orders if out in needed and not _complete(Path(out))]
    bought = [out for out in orders if out in needed and out not in todo]
    if bought:
        _refuse_other_revisions(bought, vendor)
    with RunPool(1, run_threads) as pool:
        for out in tqdm(todo, desc="buying teacher sets", unit="set", disable=not todo):
            status = pool.submit(purchase_job, (orders[out], vendor), Path(out), 0).result()
            if status != 0 or not _complete(Path(out)):
                raise UsageError(f"buying teacher set {out} failed; see {out}/log.txt")


def _refuse_other_revisions(teacher_sets: list[str], vendor: VendorConfig) -> None:
    async def served() -> str | None:
        async with vendor.open_adapter() as adapter:
            return adapter.revision

    now = asyncio.run(served())
    for out in teacher_sets:
        then = json.loads((Path(out) / "manifest.json").read_text()).get("model_revision")
        if now is not None and then is not None and then != now:
            raise UsageError(
                f"teacher set {out} was bought from model revision {then}, but the vendor now serves {now}: "
                "resume this sweep against the weights it started with, or start it in a new folder"
            )


def _complete(teacher_set: Path) -> bool:
    manifest = teacher_set / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()).get("complete", True) is not False


def execute(
    cfg: SweepConfig,
    specs: list[RunSpec],
    orders: dict[str, PurchaseOrder],
    launch: LaunchOptions,
    desc: str,
    vendor: VendorConfig | None = None,
) -> dict[str, list[str]]:
    """Buy the teacher sets the unfinished specs need, then run them on the launcher ``launch`` names,
    ``launch.threads`` torch threads each (default: the launcher's); the run folders by outcome (done /
    skipped / failed). ``vendor`` fills what the config's vendor settings leave unset."""
    root = Path(cfg.out)
    todo, outcome = [], {"done": [], "skipped": [], "failed": []}
    for spec in specs:
        out = root / run_name(spec)
        (outcome["skipped"].append(str(out)) if RunReader(out).done else todo.append((spec, out)))
    # seed by seed (a sweep cut short has every method for its first seeds), longest first within a
    # seed (so the long runs do not start last and leave the other workers idle at the end)
    todo.sort(key=lambda item: (item[0].seed, -expected_cost(item[0])))
    online = _over(cfg.vendor, vendor)
    with open_launcher(launch) as pool:
        if cfg.embed is not None:
            buy_teacher_sets(orders, {spec.teacher for spec, _ in todo}, _over(cfg.embed.buyer(), vendor), pool.threads)
        futures = {pool.submit(distill_job, (spec, str(out), online), out, pool.threads): out for spec, out in todo}
        bar = tqdm(
            as_completed(futures),
            total=len(futures),
            desc=f"{desc} ({len(outcome['skipped'])} already done)",
            unit="run",
        )
        try:
            for future in bar:
                out = futures[future]
                # the run's ``done`` marker, written after its last record, is what says it finished: a
                # process that ends abnormally after writing it (seen once in a loaded full test run,
                # at interpreter exit) lost nothing; its exit status is on record in its log
                future.result()
                outcome["done" if RunReader(out).done else "failed"].append(str(out))
        except KeyboardInterrupt:
            # start no queued run; the runs in flight got the same Ctrl-C (one process group) and
            # stop at once, resumable
            pool.cancel()
            raise
    return outcome


def _over(config: VendorConfig, defaults: VendorConfig | None) -> VendorConfig:
    return config if defaults is None else config.over(defaults)


def last_line(log: Path) -> str:
    """The last non-empty line of a run's log, what a failed run says about why (its error), so that a
    sweep's one-line error names the cause and not only the file."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log written"
    return lines[-1].strip()[:300] if lines else "empty log"


def run_search(
    cfg: SweepConfig, launch: LaunchOptions, vendor: VendorConfig | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Run the search's candidates and choose each method's hparams per target domain; writes
    ``OUT/search.json``."""
    planner = Planner(cfg)
    candidates = planner.candidates()
    specs = [spec for points in candidates.values() for _, runs in points for spec in runs]
    orders = planner.purchases.orders if planner.purchases else {}
    outcome = execute(cfg, specs, orders, launch, "hparam search", vendor)
    if outcome["failed"]:
        first = Path(outcome["failed"][0]) / "log.txt"
        raise UsageError(
            f"{len(outcome['failed'])} search run(s) failed, e.g. {first} ({last_line(first)}); fix and rerun"
        )
    root, chosen = Path(cfg.out), {}
    for method, points in candidates.items():
        chosen[method] = {}
        for target in planner.domains(cfg.search.test_domains):
            scores = [
                [
                    RunReader(root / run_name(s)).output_record()["source_val_acc"]
                    for s in runs
                    if s.test_domain == target
                ]
                for _, runs in points
            ]
            chosen[method][target] = summary(cfg.search.grid, method, target, [p for p, _ in points], scores)
    write_search(root / SEARCH_FILE, chosen)
    return chosen


def run_sweep(
    cfg: SweepConfig,
    workers: int = 1,
    dry_run: bool = False,
    threads: int | None = None,
    launcher: str = "local",
    address: str | None = None,
    vendor: VendorConfig | None = None,
) -> dict[str, list[str]]:
    """Search (if the config has one), then launch every unfinished protocol run on ``launcher``
    (:data:`client_distill.sweep.launchers.LAUNCHERS`; ``address``: the Ray cluster's); returns the run
    folders by outcome (done / skipped / failed; with ``dry_run`` nothing is launched and ``todo``
    lists what would be: the search's candidates, or the protocol's runs when there is no search).

    ``vendor`` is the vendor to buy from where the config's ``embed.vendor`` and ``vendor`` leave a
    setting unset (the demo's own vendor); the environment's ``VL2V_*`` fill the rest, in the process
    that buys. It never enters a teacher set's name."""
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
    chosen = run_search(cfg, launch, vendor) if cfg.search else None
    specs, orders = plan_sweep(cfg, chosen)
    return execute(cfg, specs, orders, launch, "sweep", vendor)
