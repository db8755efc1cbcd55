"""One distillation run under the DomainBed protocol: leave one domain out, train on the 80 % "in"
splits of the source domains (32 images per source domain per step, sampled with replacement),
evaluate every domain's "in" and "out" splits at each checkpoint, select on the source domains'
"out" splits only, and score the target domain's "in" split (``env{test}_in_acc``), as DomainBed and
the paper's code do.

A run folder holds ``args.json``, ``results.jsonl`` (one record per checkpoint, DomainBed's field
names plus query counts), ``checkpoint.pt`` (the last one: a killed run resumes from it, bit-exactly,
because every segment between checkpoints reseeds its own sampling), ``best_<stage>.pt`` and a
``done`` marker.

Teacher modes:
- ``cached`` (default, budget-aware): the image embeddings come from a teacher set bought once by
  ``vl2v embed``; a source image without one gets only the loss terms that need no image query, so
  a budget of 0 image queries is a valid run. ``budget`` < 1 keeps a seeded random fraction of the
  source images' embeddings (what buying that fraction would have cost). An image bought with
  ``--views K`` trains on the very pictures whose embeddings were bought (see :class:`TrainingImages`).
- ``online`` (the official recipe): every augmented view of every step is sent to the vendor and paid
  for; cached only within the step.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.utils.data import DataLoader, RandomSampler

from client_distill.datasets import ImageFolderDataset, Sample, open_dataset, seed_hash
from client_distill.errors import UsageError
from client_distill.hparams import resolve_hparams, stage_lr, stage_steps
from client_distill.methods import Method, Stage, Targets, create_method
from client_distill.methods.clip_tower import is_clip_tower, load_clip_image_tower
from client_distill.methods.registry import method_class
from client_distill.runspec import TEACHER_MODES, RunSpec
from client_distill.students import create_student
from client_distill.teacher_set import TeacherSet
from client_distill.transforms import eval_transform, seeded_view, train_transform


class ImageTeacher(Protocol):
    """What the online mode needs of :class:`client_distill.teacher.Teacher`."""

    def embed_images(self, images: list[bytes]) -> np.ndarray: ...


@dataclass
class Checkpoint:
    """Where a run stands: the stage, the step inside it, and what a resumed run needs."""

    stage_index: int = 0
    stage_step: int = 0
    queries_images: int = 0
    best_val: float = -1.0
    best_swad_val: float = -1.0
    #: best-model files written as ``NAME.new`` in the segment this checkpoint ends; they become ``NAME``
    #: only after the checkpoint is saved, so a crash in between cannot leave a best file from steps
    #: that the resumed run recomputes (and may score differently)
    pending: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- setup


def _student(name: str, pretrained: bool):
    return load_clip_image_tower(name, pretrained) if is_clip_tower(name) else create_student(name, pretrained)


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by ``torchrun``."""
    if "RANK" not in os.environ:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def tensors_to_png(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> list[bytes]:
    """Undo the student's normalisation and encode each augmented view as PNG, the bytes the online
    mode sends to the vendor (which applies its own preprocessing)."""
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    pixels = (x.detach().float().cpu() * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)
    out = []
    for img in pixels.permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


class TeacherTable:
    """The bought image embeddings of one list of samples, as tensors indexed by sample position:
    ``vectors [N, K, D]``, ``views [N]`` (0 = not bought)."""

    def __init__(self, samples: Sequence[Sample], teacher: TeacherSet | None, dim: int, keep: set[str] | None = None):
        found = [teacher.image_embedding(s.path) if teacher is not None and (keep is None or s.path in keep) else None for s in samples]
        k = max([f.shape[0] for f in found if f is not None], default=1)
        self.vectors = torch.zeros(len(samples), k, dim)
        self.views = torch.zeros(len(samples), dtype=torch.long)
        for i, f in enumerate(found):
            if f is not None:
                self.vectors[i, : f.shape[0]] = torch.from_numpy(np.asarray(f, dtype=np.float32))
                self.views[i] = f.shape[0]

    @property
    def paid(self) -> int:
        """Image queries these embeddings cost (one per stored view)."""
        return int(self.views.sum())

    def lookup(self, index: torch.Tensor, view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding of view ``view`` of each sample (chosen by :class:`TrainingImages` when it
        made the input) and whether the sample has one at all."""
        return self.vectors[index, view], self.views[index] > 0


class TrainingImages(ImageFolderDataset):
    """A source domain's training inputs, each paired with the bought view its target will be:
    items are ``(x, label, index, view)``.

    The view is drawn here, where the input is made, so that input and target show the same picture.
    For a bought view k ≥ 1 the input *is* that view — the seeded augmentation ``vl2v embed`` sent,
    reproduced by :func:`~client_distill.transforms.seeded_view` — followed only by the student's
    deterministic ``resize`` (eval transform). For view 0, or an image without a bought embedding,
    the input is the usual random ``augment`` of the file: the teacher's embedding of the *clean*
    image is then the target of an augmented student view, the budget-aware approximation (one query
    per image instead of one per augmented view, which only the online mode pays for). The view is
    drawn from torch's global RNG, as the augmentation is, so a segment's seed fixes both.
    """

    def __init__(
        self,
        root: str | Path,
        samples: Sequence[Sample],
        views: torch.Tensor,
        augment: Callable[[Image.Image], torch.Tensor],
        resize: Callable[[Image.Image], torch.Tensor],
        view_seed: int | None,
    ):
        if view_seed is None and bool((views > 1).any()):
            raise ValueError("inputs made from bought views ≥ 1 need the seed `vl2v embed` drew them with")
        super().__init__(root, samples, augment)
        self.views, self.resize, self.view_seed = views, resize, view_seed

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, int]:
        sample, image, bought = self.samples[index], self.image(index), int(self.views[index])
        view = int(torch.randint(bought, ())) if bought > 1 else 0
        if view == 0:
            return self.transform(image), sample.label, index, 0
        return self.resize(seeded_view(image, self.view_seed, sample.path, view)), sample.label, index, view


def _view_seed(teacher: TeacherSet | None, tables: Sequence[TeacherTable]) -> int | None:
    """The seed ``vl2v embed`` drew the set's augmented views with (its manifest's ``seed``), needed
    only when a table holds a view ≥ 1. A set without it cannot be paired with its pictures."""
    if teacher is None or all(t.vectors.shape[1] == 1 for t in tables):
        return None
    if not isinstance(teacher.meta.get("seed"), int):
        raise UsageError(
            "the teacher set holds augmented views (views ≥ 1) but its manifest has no integer 'seed' to redraw them "
            "with; rebuild it with the same `vl2v embed` command (what the cache holds is not paid again)"
        )
    return int(teacher.meta["seed"])


def _budget_keep(samples: Sequence[Sample], teacher: TeacherSet, budget: float, seed: int) -> set[str]:
    """A seeded random ``budget`` fraction of the source images that have a bought embedding."""
    if not 0.0 <= budget <= 1.0:
        raise UsageError(f"budget must be a fraction in [0, 1], got {budget}")
    have = sorted(s.path for s in samples if teacher.image_embedding(s.path) is not None)
    n = int(round(budget * len(samples)))
    rng = np.random.RandomState(seed_hash("budget", seed))
    return set(rng.permutation(have)[: min(n, len(have))].tolist())


def cached_batch(batches, tables: Sequence[TeacherTable]):
    """Concatenate one ``(x, y, index, view)`` minibatch per source domain (DomainBed: 32 per domain)
    and look up the bought embedding of the view each input was made from: ``(x, y, image [B, D],
    has_image [B])``."""
    xs, ys, embs, has = [], [], [], []
    for (x, y, idx, view), table in zip(batches, tables):
        e, h = table.lookup(idx, view)
        xs.append(x), ys.append(y), embs.append(e), has.append(h)
    return torch.cat(xs), torch.cat(ys), torch.cat(embs), torch.cat(has)


def to_device(x: torch.Tensor, targets: Targets, device: torch.device) -> tuple[torch.Tensor, Targets]:
    """Move a batch (channels-last, asynchronously from pinned memory on CUDA)."""
    cuda = device.type == "cuda"
    x = x.to(device, non_blocking=cuda, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    return x, Targets(*(t.to(device, non_blocking=cuda) for t in (targets.labels, targets.image, targets.has_image)))


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when ``amp``; full precision otherwise (CPU results equal up to numerics)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and amp else contextlib.nullcontext()


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, targets: Targets, amp: bool = True) -> torch.Tensor:
    """One optimisation step of ``model`` (a method or its DDP wrapper); returns the detached loss
    without synchronising the device."""
    with autocast(x.device, amp):
        loss = model(x, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ----------------------------------------------------------------------------------------------- run


class Run:
    """One run's state: data, method, teacher targets, and the files in its folder."""

    def __init__(self, spec: RunSpec, out: str | Path, online_teacher: ImageTeacher | None = None, stop_after: int | None = None):
        if spec.teacher_mode not in TEACHER_MODES:
            raise UsageError(f"teacher mode must be one of {TEACHER_MODES}, got {spec.teacher_mode!r}")
        if spec.teacher_mode == "online" and online_teacher is None:
            raise UsageError("--teacher-mode online needs a vendor to query (see `vl2v distill --help`)")
        self.spec, self.out, self.online = spec, Path(out), online_teacher if spec.teacher_mode == "online" else None
        self.stop_after = stop_after  # global step after whose checkpoint to stop, resumably
        self.rank, self.world = _distributed()
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
        self.data = open_dataset(spec.data, spec.dataset)
        self.test_env = self.data.domain_index(spec.test_domain)
        self.splits = [self.data.split(d, spec.seed) for d in self.data.domains]
        self.sources = [i for i in range(len(self.data.domains)) if i != self.test_env]
        self.hp = resolve_hparams(spec.method, spec.profile, self.data.name, spec.hparams)
        self.teacher = TeacherSet.load(spec.teacher) if spec.teacher else None
        if self.teacher is not None and self.teacher.classes != self.data.classes:
            raise UsageError(f"teacher set classes {self.teacher.classes} differ from the dataset's {self.data.classes}")
        text = torch.from_numpy(np.asarray(self.teacher.text_embeddings, dtype=np.float32)) if self.teacher else None
        cls = method_class(spec.method, has_text=text is not None)
        torch.manual_seed(seed_hash("init", spec.seed))  # the head's initialisation
        student = _student(spec.student, spec.pretrained) if cls.needs_student else None
        self.method: Method = create_method(spec.method, student=student, text_embeddings=text, num_classes=len(self.data.classes), hparams=self.hp)
        self.method.to(self.device)
        if self.device.type == "cuda":
            self.method.to(memory_format=torch.channels_last)
        self.student = student
        dim = self.teacher.dim if self.teacher else 1
        keep = None
        if spec.budget is not None and self.teacher is not None:
            keep = _budget_keep([s for i in self.sources for s in self.splits[i][0]], self.teacher, spec.budget, spec.seed)
        use_cache = self.teacher is not None and self.method.uses_teacher_images and self.online is None
        self.tables = {i: TeacherTable(self.splits[i][0], self.teacher if use_cache else None, dim, keep) for i in self.sources}
        self.view_seed = _view_seed(self.teacher, list(self.tables.values()))
        if self.online is None and not self.method.learns_without_images and not any(t.paid for t in self.tables.values()):
            raise UsageError(f"{spec.method} learns only from teacher image embeddings and this run has none (budget 0 or no teacher set)")
        self.queries_texts = sum(len(p) for p in self.teacher.prompts) if self.teacher else 0
        self.queries_eval_images = 0

    # -------------------------------------------------------------------------------------- helpers

    def _autocast(self):
        return autocast(self.device, bool(self.hp["amp"]))

    def _loader(self, images: ImageFolderDataset, batch: int, sampler=None, generator=None) -> DataLoader:
        workers = int(self.hp["num_workers"])
        return DataLoader(
            images,
            batch_size=batch,
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            generator=generator,
            persistent_workers=False,
        )

    def _segment(self, stage_index: int, start: int, n: int) -> Iterator:
        """Batches for steps ``start..start+n``: one minibatch per source domain per step, sampled with
        replacement (DomainBed's infinite loaders), seeded by (seed, stage, step, rank) so a resumed run
        draws exactly what an uninterrupted one would have."""
        seed = seed_hash(self.spec.seed, stage_index, start, self.rank)
        torch.manual_seed(seed)  # augmentations and views drawn in the main process
        s = self.student
        augment, resize = train_transform(s.input_size, s.mean, s.std), eval_transform(s.input_size, s.mean, s.std)
        bpd = int(self.hp["batch_per_domain"])
        iters = []
        for j, i in enumerate(self.sources):
            g = torch.Generator().manual_seed(seed + j)
            sampler = RandomSampler(range(len(self.splits[i][0])), replacement=True, num_samples=bpd * n, generator=g)
            images = TrainingImages(self.data.root, self.splits[i][0], self.tables[i].views, augment, resize, self.view_seed)
            iters.append(iter(self._loader(images, bpd, sampler, torch.Generator().manual_seed(seed - j - 1))))
        return zip(*iters)

    def _all_ranks(self, count: int) -> int:
        """``count`` summed over the ranks of a ``torchrun`` job: each rank buys the online views of its
        own batches, and the record (written by rank 0) and the checkpoint must hold them all."""
        if not dist.is_initialized():
            return count
        total = torch.tensor([count], dtype=torch.long, device=self.device)
        dist.all_reduce(total)
        return int(total.item())

    def _targets(self, batches) -> tuple[torch.Tensor, Targets, int]:
        """Concatenate the per-domain minibatches and attach teacher targets; returns the query cost."""
        x, y, image, has_image = cached_batch(batches, [self.tables[i] for i in self.sources])
        paid = 0
        if self.online is not None and self.method.uses_teacher_images:
            before = getattr(self.online, "paid", None)
            vectors = self.online.embed_images(tensors_to_png(x, self.student.mean, self.student.std))
            image, has_image = torch.from_numpy(np.asarray(vectors, dtype=np.float32)), torch.ones(len(x), dtype=torch.bool)
            paid = len(x) if before is None else self.online.paid - before  # what the vendor charged
        x, targets = to_device(x, Targets(y, image, has_image), self.device)
        return x, targets, paid

    # ----------------------------------------------------------------------------------- evaluation

    def _teacher_eval_embeddings(self, samples: Sequence[Sample]) -> torch.Tensor:
        """The teacher's embeddings of evaluated images (zero-shot): from the teacher set, else bought
        online; either way counted as evaluation queries, apart from the training budget."""
        vecs: list[np.ndarray | None] = [self.teacher.image_embedding(s.path) if self.teacher else None for s in samples]
        missing = [i for i, v in enumerate(vecs) if v is None]
        if missing and self.online is None:
            raise UsageError(
                f"zero_shot needs the teacher's embedding of every evaluated image; {len(missing)} of {len(samples)} "
                f"are not in the teacher set (embed all domains, or use --teacher-mode online)"
            )
        if missing:
            bought = self.online.embed_images([(self.data.root / samples[i].path).read_bytes() for i in missing])
            for i, v in zip(missing, bought):
                vecs[i] = np.asarray(v)[None]
        self.queries_eval_images += len(samples)
        return torch.from_numpy(np.stack([np.asarray(v[0], dtype=np.float32) for v in vecs]))

    @torch.no_grad()
    def accuracy(self, method: Method, samples: Sequence[Sample]) -> float:
        if not samples:
            return float("nan")
        labels = torch.tensor([s.label for s in samples])
        batch = int(self.hp["test_batch"])
        was_training = method.training
        method.eval()
        if method.needs_teacher_at_eval:
            emb = self._teacher_eval_embeddings(samples).to(self.device)
            preds = torch.cat([method.logits(None, emb[i : i + batch]).argmax(1) for i in range(0, len(emb), batch)]).cpu()
        else:
            s = self.student
            images = ImageFolderDataset(self.data.root, samples, eval_transform(s.input_size, s.mean, s.std))
            preds = []
            for x, _, _ in self._loader(images, batch):
                fmt = torch.channels_last if self.device.type == "cuda" else torch.contiguous_format
                with self._autocast():
                    preds.append(method.logits(x.to(self.device, memory_format=fmt)).argmax(1).cpu())
            preds = torch.cat(preds)
        method.train(was_training)
        return float((preds == labels).float().mean())

    def evaluate(self, method: Method) -> dict[str, float]:
        """DomainBed fields: ``env{i}_in_acc`` / ``env{i}_out_acc`` for every domain, plus the selection
        criterion ``source_val_acc`` (mean "out" accuracy over the source domains only)."""
        accs: dict[str, float] = {}
        for i, (split_in, split_out) in enumerate(self.splits):
            accs[f"env{i}_in_acc"] = self.accuracy(method, split_in)
            accs[f"env{i}_out_acc"] = self.accuracy(method, split_out)
        accs["source_val_acc"] = float(np.mean([accs[f"env{i}_out_acc"] for i in self.sources]))
        return accs

    # ---------------------------------------------------------------------------------- bookkeeping

    def _record(self, stage: str, stage_index: int, stage_step: int, global_step: int, accs: dict, extra: dict) -> dict:
        n_stages = max(1, len(self.method.stages))
        return {
            "step": global_step,
            "stage": stage,
            "stage_index": stage_index,
            "n_stages": n_stages,
            "stage_step": stage_step,
            **accs,
            "test_env": self.test_env,
            "test_domain": self.spec.test_domain,
            "domains": self.data.domains,
            "dataset": self.data.name,
            "target_split": "in",
            "queries_texts": self.queries_texts,
            "queries_eval_images": self.queries_eval_images,
            **extra,
            "args": self.spec.to_dict(),
            "hparams": self.hp,
        }

    def _append(self, record: dict) -> None:
        with open(self.out / "results.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _save(self, obj: Any, name: str) -> None:
        tmp = self.out / (name + ".tmp")
        torch.save(obj, tmp)
        tmp.replace(self.out / name)

    def _promote(self, names: list[str]) -> None:
        for name in names:
            (self.out / (name + ".new")).replace(self.out / name)

    def _resume(self) -> tuple[Checkpoint, dict | None]:
        """Load ``checkpoint.pt`` if there is one and drop records (and best files) written after it."""
        path = self.out / "checkpoint.pt"
        state = torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None
        pos = Checkpoint(**state["position"]) if state else Checkpoint()
        self._promote([name for name in pos.pending if (self.out / (name + ".new")).is_file()])
        for stale in self.out.glob("*.new"):  # a best of steps after the checkpoint, which are recomputed
            stale.unlink()
        if state is None:
            (self.out / "results.jsonl").unlink(missing_ok=True)
            return pos, None
        kept = [
            line
            for line in (self.out / "results.jsonl").read_text().splitlines()
            if line and (json.loads(line)["stage_index"], json.loads(line)["stage_step"]) <= (pos.stage_index, pos.stage_step)
        ] if (self.out / "results.jsonl").is_file() else []
        (self.out / "results.jsonl").write_text("".join(line + "\n" for line in kept))
        return pos, state

    # ----------------------------------------------------------------------------------------- main

    def run(self) -> dict | None:
        """Train every stage (resuming if a checkpoint exists) and return the selected record (None if
        stopped early by ``stop_after``)."""
        self.out.mkdir(parents=True, exist_ok=True)
        args_file = self.out / "args.json"
        if args_file.is_file() and json.loads(args_file.read_text()) != self.spec.to_dict():
            raise UsageError(f"{self.out} holds a different run (args.json differs); use another --out")
        if (self.out / "done").is_file():
            return select(load_records(self.out))
        if self.rank == 0:
            args_file.write_text(json.dumps(self.spec.to_dict(), indent=2))
        pos, state = self._resume() if self.rank == 0 else (Checkpoint(), None)
        if self.world > 1:  # every rank resumes from rank 0's position
            box = [(pos, state)]
            dist.broadcast_object_list(box, src=0)
            pos, state = box[0]
        if not self.method.stages:  # zero-shot: one evaluation, no training
            if self.rank == 0:
                accs = self.evaluate(self.method)
                self._append(self._record("predict", 0, 0, 0, accs, {"loss": None, "queries_images": 0, "swad": False}))
        for index, stage in enumerate(self.method.stages):
            if index < pos.stage_index:
                continue
            if not self._train_stage(index, stage, pos, state if index == pos.stage_index else None):
                return None
            pos, state = Checkpoint(stage_index=index + 1, queries_images=pos.queries_images), None
        if self.rank == 0:
            (self.out / "done").write_text("done\n")
        _barrier()
        return select(load_records(self.out))

    def _train_stage(self, index: int, stage: Stage, pos: Checkpoint, state: dict | None) -> bool:
        """Train one stage to its end (True) or until ``stop_after`` (False)."""
        method, hp = self.method, self.hp
        method.set_stage(stage)
        if state is not None:
            method.load_state_dict(state["model"])
        elif stage.init_from_best:
            prev = self.method.stages[index - 1].name
            method.load_state_dict(torch.load(self.out / f"best_{prev}.pt", map_location=self.device, weights_only=True))
        method.train()
        params = method.trainable_parameters()
        optimizer = torch.optim.Adam(params, lr=stage_lr(hp, stage.name), weight_decay=float(hp["weight_decay"]))  # fresh per stage
        model: torch.nn.Module = method
        if dist.is_initialized():
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(method, device_ids=ids)
        n = stage_steps(hp, stage.name)
        swa = torch.optim.swa_utils.AveragedModel(method, use_buffers=True) if hp["swad"] else None
        swa_start = int(float(hp["swad_start"]) * n)
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            if swa is not None and state.get("swa") is not None:
                swa.load_state_dict(state["swa"])
        offset = sum(stage_steps(hp, s.name) for s in self.method.stages[:index])
        step, best, queries = pos.stage_step, pos.best_val, pos.queries_images
        best_swa = pos.best_swad_val
        freq = int(hp["checkpoint_freq"])
        paid_cached = sum(t.paid for t in self.tables.values())
        while step < n:
            end = min((step // freq + 1) * freq, n)
            losses, t0, seen, paid = [], time.perf_counter(), 0, 0
            for batch in self._segment(index, step, end - step):
                x, targets, cost = self._targets(batch)
                losses.append(train_step(model, optimizer, x, targets, bool(hp["amp"])))
                paid, seen, step = paid + cost, seen + len(x), step + 1
                if swa is not None and step > swa_start:
                    swa.update_parameters(method)
            queries += self._all_ranks(paid)
            speed = seen / max(time.perf_counter() - t0, 1e-9)
            if self.rank == 0:
                extra = {
                    "loss": float(torch.stack(losses).float().mean()),
                    "queries_images": queries + paid_cached,  # online: paid per view; cached: what the set cost
                    "budget_images": sum(int((t.views > 0).sum()) for t in self.tables.values()),
                    "source_images": sum(len(self.splits[i][0]) for i in self.sources),
                    "images_per_s": speed,
                    "world_size": self.world,
                }
                accs, pending = self.evaluate(method), []
                self._append(self._record(stage.name, index, step, offset + step, accs, {**extra, "swad": False}))
                if accs["source_val_acc"] > best:
                    best = accs["source_val_acc"]
                    pending.append(f"best_{stage.name}.pt")
                    self._save(method.state_dict(), pending[-1] + ".new")
                if swa is not None and step > swa_start:
                    swa_accs = self.evaluate(swa.module)
                    self._append(self._record(stage.name, index, step, offset + step, swa_accs, {**extra, "swad": True}))
                    if swa_accs["source_val_acc"] >= best_swa:
                        best_swa = swa_accs["source_val_acc"]
                        pending.append(f"best_{stage.name}_swad.pt")
                        self._save(swa.module.state_dict(), pending[-1] + ".new")
                position = Checkpoint(index, step, queries, best, best_swa, pending)
                self._save(
                    {"position": asdict(position), "model": method.state_dict(), "optimizer": optimizer.state_dict(), "swa": swa.state_dict() if swa else None},
                    "checkpoint.pt",
                )
                self._promote(pending)
            _barrier()
            if self.stop_after is not None and offset + step >= self.stop_after:
                return False
        pos.queries_images = queries
        return True


def run_distill(spec: RunSpec, out: str | Path, online_teacher: ImageTeacher | None = None, stop_after: int | None = None) -> dict | None:
    """Run (or resume, or skip if ``done``) one distillation run; returns its selected record.
    ``stop_after`` stops at the first checkpoint at or after that global step, without ``done``."""
    return Run(spec, out, online_teacher, stop_after).run()


# ----------------------------------------------------------------------------------------- selection


def load_records(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "results.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def select(records: Sequence[dict]) -> dict:
    """Training-domain validation (DomainBed's IIDAccuracySelectionMethod): among the final stage's
    records (SWA-averaged ones included), the one with the best mean source "out" accuracy; the
    target is never looked at. Ties go to the later checkpoint."""
    final = [r for r in records if r["stage_index"] == r["n_stages"] - 1]
    if not final:
        raise UsageError("the run has no record of its final stage yet")
    return max(final, key=lambda r: (r["source_val_acc"], r["step"]))
