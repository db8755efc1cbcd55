"""Buy a dataset's teacher embeddings within a query budget and write them as a teacher set.

The purchase plan is a fixed list: first the class prompts (``len(classes) × len(templates)``
texts), then ``views`` views per source image in the selection strategy's order, cut at the
budget, each view at the price the vendor's model card states (one query, or one per started
``pixels_per_query`` pixels where the vendor prices by size). Because the plan is a deterministic
function of the arguments and every input already bought is a free cache hit, a rerun of the same
command pays only for what the last run did not receive, and all runs together pay for at most
``budget`` queries. Each run additionally refuses to *send* more than ``budget`` queries
(:class:`~client_distill.buy.teacher.Teacher`'s guard).

View 0 of an image is the exact file; view ``v ≥ 1`` is the training augmentation of the paper
(DomainBed's, :func:`client_distill.data.transforms.train_transform`) drawn with a seed derived from
(seed, path, v) by :func:`client_distill.data.transforms.seeded_view`, PNG-encoded: the same bytes on every
run, so they are cached like files, and training reproduces the same picture from the manifest's
``seed`` to pair it with its embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from client_distill.adapters.base import l2_normalise
from client_distill.adapters.errors import BudgetExhausted, TransientError, VendorError
from client_distill.buy.query_ledger import ledger_totals
from client_distill.buy.selection import FeatureFn, Ranker, order_samples
from client_distill.buy.teacher import Teacher
from client_distill.buy.teacher_set import TeacherSet
from client_distill.buy.vendor import VendorConfig, open_teacher
from client_distill.data.datasets import DomainDataset, Sample, open_dataset
from client_distill.data.image_store import png_bytes
from client_distill.data.transforms import seeded_view
from client_distill.errors import UsageError
from shared.protocol import image_queries

DEFAULT_TEMPLATES = ("a photo of a {}",)


@dataclass
class EmbedPlan:
    """What to buy, in order: prompt texts (class-major), then ``(sample, view)`` image queries."""

    classes: list[str]
    prompts: list[list[str]]
    images: list[tuple[Sample, int]] = field(default_factory=list)
    #: what the images cost, in queries (their number where each is one query)
    image_queries: int = 0

    @property
    def texts(self) -> list[str]:
        return [t for per_class in self.prompts for t in per_class]

    @property
    def queries(self) -> int:
        """The queries the whole plan costs: a text is one, an image its price."""
        return len(self.texts) + self.image_queries


#: the queries view ``v`` of a sample costs (:func:`view_price`)
ViewPrice = Callable[[Sample, int], int]


def view_price(root: Path, pixels_per_query: int) -> ViewPrice | None:
    """The price of a view under a card's ``pixels_per_query``, from the file's header as the vendor
    computes it (view 0 is the file, a view ``v ≥ 1`` a square at its shorter side:
    :func:`~client_distill.data.transforms.seeded_view`); None for flat pricing (one query each)."""
    if pixels_per_query <= 0:
        return None

    def price(sample: Sample, view: int) -> int:
        with Image.open(root / sample.path) as img:
            w, h = img.size
        return image_queries(w * h if view == 0 else min(w, h) ** 2, pixels_per_query)

    return price


def load_templates(path: str | Path | None) -> list[str]:
    """Prompt templates, one per line with ``{}`` for the class name (blank lines and ``#`` skipped)."""
    if path is None:
        return list(DEFAULT_TEMPLATES)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read prompt templates {path}: {exc}") from exc
    templates = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise UsageError(
            f"{path}: every template needs a {{}} for the class name ({bad[0] if bad else 'file is empty'!r})"
        )
    return templates


def source_samples(dataset: DomainDataset, domains: Sequence[str], split: str, seed: int) -> list[Sample]:
    """The images that may be bought: DomainBed's "in" split of each source domain, or all."""
    if split not in ("in", "all"):
        raise UsageError(f"--split must be 'in' or 'all', not {split!r}")
    return [s for d in domains for s in (dataset.split(d, seed)[0] if split == "in" else dataset.samples(d))]


def make_plan(
    classes: Sequence[str],
    templates: Sequence[str],
    ordered: Sequence[Sample],
    views: int,
    budget: int,
    price: ViewPrice | None = None,
) -> EmbedPlan:
    """The first ``budget`` queries: all prompts, then ``views`` per image in ``ordered``, each view at
    its ``price`` (None: one query), up to the first view the rest of the budget cannot pay."""
    if views < 1:
        raise UsageError("--views must be at least 1 (view 0 is the image itself)")
    plan = EmbedPlan(list(classes), [[t.format(c) for t in templates] for c in classes])
    n_texts = len(plan.texts)
    if budget < n_texts:
        raise UsageError(
            f"a budget of {budget} queries cannot even buy the {n_texts} class prompts; raise --max-queries"
        )
    left = budget - n_texts
    if price is None:
        plan.images = [(s, v) for s in ordered for v in range(views)][:left]
        plan.image_queries = len(plan.images)
        return plan
    for s in ordered:
        for v in range(views):
            cost = price(s, v)
            if cost > left:
                return plan
            plan.images.append((s, v))
            plan.image_queries += cost
            left -= cost
    return plan


def view_bytes(root: Path, sample: Sample, view: int, seed: int) -> bytes:
    """The bytes sent for view ``view`` of ``sample``: the file itself for view 0, otherwise a
    reproducible augmentation of it as PNG."""
    path = root / sample.path
    if view == 0:
        return path.read_bytes()
    with Image.open(path) as img:
        return png_bytes(seeded_view(img.convert("RGB"), seed, sample.path, view))


def buy(
    teacher: Teacher,
    root: Path,
    plan: EmbedPlan,
    seed: int,
    meta: dict[str, Any],
    on_saved: Callable[[TeacherSet], None],
) -> TeacherSet:
    """Buy ``plan`` through ``teacher`` in chunks of what the adapter can have in flight, and hand
    the resulting teacher set to ``on_saved``, also when the run is cut short (budget, vendor
    failure, Ctrl-C): then it holds what was bought, and the error propagates."""
    text_vecs = teacher.embed_texts(plan.texts)
    per_class = len(plan.prompts[0])
    texts = l2_normalise(text_vecs.reshape(len(plan.classes), per_class, -1).mean(axis=1))
    bought: dict[tuple[str, int], np.ndarray] = {}
    chunk_size = teacher.adapter.batch_limit * teacher.adapter.concurrency
    error: BaseException | None = None
    for start in range(0, len(plan.images), chunk_size):
        chunk = plan.images[start : start + chunk_size]
        payloads = [view_bytes(root, s, v, seed) for s, v in chunk]
        try:
            vectors: Sequence[np.ndarray | None] = teacher.embed_images(payloads)
        except BaseException as exc:  # keep the paid part of the chunk, then stop
            error = exc
            vectors = teacher.cached("image", payloads)
        bought.update({(s.path, v): vec for (s, v), vec in zip(chunk, vectors, strict=True) if vec is not None})
        if error is not None:
            break
    images: dict[str, np.ndarray] = {}
    for sample, _ in plan.images:
        views = []
        while (sample.path, len(views)) in bought:
            views.append(bought[(sample.path, len(views))])
        if views:
            images[sample.path] = np.stack(views).astype(np.float16)
    meta = {
        **meta,
        "model_revision": teacher.adapter.revision,  # None where the vendor's model names pin their weights
        # the teacher's own logit scale (KD's soft targets and the text head use it; None: CLIP's 100 assumed)
        "logit_scale": teacher.adapter.card.get("logit_scale"),
        "model_card": teacher.adapter.card,
        "complete": error is None,
        "queries": {
            "planned": plan.queries,
            "texts": len(plan.texts),
            "image_queries_bought": len(bought),
            "paid_this_run": teacher.paid,
            "cache_hits_this_run": teacher.hits,
            "sent_this_run": teacher.reserved,
        },
    }
    result = TeacherSet(plan.classes, plan.prompts, texts, images, meta)
    on_saved(result)
    if error is not None:
        raise error
    return result


# ------------------------------------------------------------------------------------ the use case


@dataclass(frozen=True)
class PurchaseOrder:
    """What ``vl2v embed`` buys: a dataset's class prompts and images, within ``max_queries``, written
    as the teacher set ``out`` (see the module docstring; each field is the flag of the same name)."""

    data: str
    out: str
    max_queries: int
    dataset: str | None = None
    #: source domains (None: all)
    domains: tuple[str, ...] | None = None
    strategy: str = "random"
    #: the pretrained student whose features ``kcenter`` orders the images by (None: the default student)
    student: str | None = None
    views: int = 1
    #: a file of prompt templates with ``{}`` (None: ``a photo of a {}``)
    prompts: str | None = None
    split: str = "in"
    seed: int = 0
    #: ``uncertainty``'s acquisition rounds, each spending an equal share of the budget
    rounds: int = 4


#: how a purchase gets the student's features for ``kcenter``: ``(dataset root, student name or None)`` →
#: :data:`~client_distill.buy.selection.FeatureFn` (:func:`client_distill.train.probe.student_features`,
#: handed in by the caller: buying sits below training)
StudentFeatures = Callable[[Path, str], FeatureFn]
#: how a purchase gets the :data:`~client_distill.buy.selection.Ranker` of ``uncertainty``, the same way
#: (:func:`client_distill.train.probe.uncertainty_ranker`)
StudentRanker = Callable[[Path, str], Ranker]


def buy_teacher_set(
    order: PurchaseOrder,
    vendor: VendorConfig,
    student_features: StudentFeatures | None = None,
    student_ranker: StudentRanker | None = None,
) -> TeacherSet:
    """Buy ``order`` from ``vendor`` (through its cache: what was bought before is free), write the
    teacher set to ``order.out`` (a partial one too, when the budget, the vendor or Ctrl-C stops the
    purchase) and print what it cost. ``uncertainty`` buys in ``order.rounds`` rounds, each re-buying the
    last one's images (cache hits) and then the ones ``student_ranker``'s ranker puts first."""
    rounds = order.rounds if order.strategy == "uncertainty" else 1
    if rounds < 1 or (rounds > 1 and student_ranker is None):
        raise UsageError("the uncertainty strategy needs --rounds ≥ 1 and a student to rank the images by")
    dataset = open_dataset(order.data, order.dataset)
    domains = list(order.domains) if order.domains else dataset.domains
    samples = source_samples(dataset, domains, order.split, order.seed)
    features = None
    if order.strategy == "kcenter" and student_features is not None:
        features = student_features(Path(dataset.root), order.student)
    ranker = student_ranker(Path(dataset.root), order.student) if rounds > 1 and student_ranker else None
    templates = load_templates(order.prompts)
    # kcenter only needs to order the images the budget can reach (ceil: a last one may be partial);
    # a budget of the prompts alone orders nothing (kcenter would otherwise order every image)
    affordable = -(-max(order.max_queries - len(dataset.classes) * len(templates), 0) // max(order.views, 1))
    ordered = order_samples(samples, order.strategy, order.seed, features, k=affordable) if affordable else []
    with open_teacher(vendor, budget=order.max_queries) as teacher:
        bar = tqdm(unit="q", desc="embed", dynamic_ncols=True)  # its total once the card states the price

        def progress(teacher: Teacher) -> None:
            bar.set_description_str("embed", refresh=False)  # no longer waiting, if it was
            bar.n = teacher.hits + teacher.paid
            bar.set_postfix(paid=teacher.paid, hits=teacher.hits, retries=teacher.adapter.retries, refresh=False)
            bar.refresh()

        def save(result: TeacherSet) -> None:
            # an acquisition round before the last is not the set ordered: a crash in the next round must
            # leave a set that says so, or a rerun (or a sweep) would take it for the whole purchase
            result.meta["complete"] = result.meta["complete"] and result.meta.get("round", rounds) == rounds
            result.meta["ledger"] = ledger_totals(teacher.cache, teacher.ledger.account)
            if result.meta["complete"]:
                result.meta["vendor_usage"] = teacher.vendor_usage()
            result.save(order.out)

        teacher.on_progress = progress
        teacher.adapter.retry.on_wait = lambda text: bar.set_description_str(f"embed: waiting for the vendor: {text}")
        try:
            price = view_price(Path(dataset.root), teacher.pixels_per_query)  # the card, read from the vendor
            meta = {
                "vendor": teacher.adapter.name,
                "vendor_url": vendor.resolved().vendor_url,
                "model": teacher.model,
                "dataset": dataset.name,
                "domains": domains,
                "split": order.split,
                "strategy": order.strategy,
                "views": order.views,
                "seed": order.seed,
                "budget": order.max_queries,
            }
            n_texts = len(dataset.classes) * len(templates)
            for r in range(1, rounds + 1):
                budget = order.max_queries - (rounds - r) * max(order.max_queries - n_texts, 0) // rounds
                plan = make_plan(dataset.classes, templates, ordered, order.views, budget, price)
                bar.total = teacher.hits + teacher.paid + plan.queries
                bar.refresh()
                round_meta = {**meta, "round": r, "rounds": rounds} if rounds > 1 else meta
                result = buy(teacher, Path(dataset.root), plan, order.seed, round_meta, save)
                bought = list(dict.fromkeys(s for s, _ in plan.images))
                if ranker is not None and r < rounds and bought:
                    chosen = {s.path for s in bought}
                    ordered = [*bought, *ranker(result, bought, [s for s in samples if s.path not in chosen])]
        except BudgetExhausted as exc:
            raise BudgetExhausted(
                f"{exc}. Everything bought is cached and a partial teacher set is in {order.out}; "
                "top up the key and rerun to continue"
            ) from exc
        except TransientError as exc:
            raise VendorError(
                f"vendor unavailable, gave up after retries: {exc}. Everything bought is cached; rerun to continue"
            ) from exc
        finally:
            bar.close()
    q = result.meta["queries"]
    print(
        f"bought {len(result.image_embeddings)} images ({q['image_queries_bought']} image queries) "
        f"and {q['texts']} prompts: "
        f"paid {q['paid_this_run']} queries this run, {q['cache_hits_this_run']} cache hits; "
        f"ledger {result.meta['ledger']}; vendor usage {result.meta.get('vendor_usage')}; wrote {order.out}"
    )
    return result
