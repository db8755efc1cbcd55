"""One distillation run under the DomainBed protocol: leave one domain out, train on the 80 % "in"
splits of the source domains (``batch_per_domain`` images per source domain per step, drawn with
replacement), evaluate the source domains' 20 % "out" splits at every checkpoint, select on them only,
and score the target domain's "in" split (``env{test}_in_acc``), as DomainBed and the paper's code do.

The path of a run through the modules: :class:`Run` opens the data (:mod:`~client_distill.data.datasets`),
the teacher set and the student, builds the method (:mod:`~client_distill.methods`); the source
images are decoded once (:mod:`~client_distill.data.image_store`) and each step's batch is drawn, augmented
and paired with its teacher embeddings by :class:`~client_distill.train.pairing.SourceBatches`; every
``checkpoint_freq`` steps :class:`Evaluator` scores source validation, the run folder
(:class:`~client_distill.train.run_folder.RunFolder`) records it, keeps the stage's best checkpoint by the
one rule of :mod:`~client_distill.train.model_selection` and saves a resumable checkpoint, and SWAD
(:mod:`~client_distill.train.swad`) closes a segment. After the last stage the run scores the models it
outputs (the best checkpoint, and SWAD's average where SWAD is on) on every split and writes ``done``.

Teacher modes:
- ``cached`` (default, budget-aware): the image embeddings come from a teacher set bought once by
  ``vl2v embed``; a source image without one gets only the loss terms that need no image query, so a
  budget of 0 image queries is a valid run. ``budget`` < 1 keeps a seeded random fraction of the
  source images' embeddings (what buying that fraction would have cost).
- ``online`` (the official recipe): every augmented view of every step is sent to the vendor and paid
  for.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image

from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import Sample, open_dataset, seed_hash
from client_distill.data.image_store import load_images
from client_distill.data.image_store import png_bytes as encode_png
from client_distill.errors import UsageError
from client_distill.methods.base import CLIP_LOGIT_SCALE, Method, Stage, Targets
from client_distill.methods.registry import create_method, method_class
from client_distill.train.augment import BatchAugment, normalise, resize
from client_distill.train.hparams import resolve_hparams
from client_distill.train.model_selection import best_checkpoint, is_better, select
from client_distill.train.pairing import (
    SourceBatches,
    SourceDomain,
    TeacherTable,
    budget_keep,
    check_budget,
    view_pictures,
    view_seed,
)
from client_distill.train.run_folder import SWAD_WEIGHTS, RunFolder
from client_distill.train.runspec import TEACHER_MODES, RunSpec
from client_distill.train.students import create_student
from client_distill.train.swad import LossValley, SegmentAverage, averaged_copy

__all__ = ["Run", "RunSpec", "run_distill", "train_step", "TEACHER_MODES"]


class ImageTeacher(Protocol):
    """What the online mode needs of :class:`client_distill.buy.teacher.Teacher`."""


@dataclass(frozen=True)
class Progress:
    """Where a run stands, for a progress bar: a run of minutes would otherwise say nothing until it
    ends. Told after every step, every checkpoint, and once when the output models are scored."""

    #: steps done and to do, over every stage (ADiP's two stages count twice ``steps``)
    step: int
    total: int
    #: the stage training, or ``"scoring"`` once every stage is done
    stage: str
    #: source-validation accuracy at the last checkpoint (None before the first one of this process)
    source_val_acc: float | None

    def embed_images(self, images: list[bytes]) -> np.ndarray: ...


@dataclass
class Position:
    """Where a run stands: the stage, the step inside it, the online image queries paid so far, the
    best files written in the segment this position ends (see :class:`RunFolder`), and the seconds its
    processes have run so far (summed over a resumed run's processes, up to their last checkpoint)."""

    stage_index: int = 0
    stage_step: int = 0
    queries_images: int = 0
    pending: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class StageLoop:
    """What one stage's training loop holds: the model stepped (the method, or its DDP wrapper), its
    optimizer, SWAD's window search and current segment (final stage, rank 0), and the stage's best
    checkpoint record so far."""

    index: int
    stage: Stage
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    swad: LossValley | None
    segment: SegmentAverage | None
    best: dict | None


# ----------------------------------------------------------------------------------------- helpers


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


#: zlib level of the online mode's PNGs: every step encodes a whole batch and the vendor decodes it, and
#: stored (0) blocks cost the least on both sides: per 48 synth-pacs views, encoding 7.2 ms (level 1: 12.6,
#: Pillow's default 6: 23.3) and the vendor's decoding 2.8 ms (5.9, 5.2), for 12.1 KB a view (4.8, 4.4)
#: that only crosses loopback or a network (bench/online_png.py, 2026-12-07 at d444ccc); the pixels are
#: the same (lossless), so the vendor embeds the same picture at any level
ONLINE_PNG_LEVEL = 0


def png_bytes(pixels: torch.Tensor) -> list[bytes]:
    """Each image of ``[B, 3, H, W]`` in ``[0, 1]`` as PNG: the bytes the online mode sends (the vendor
    applies its own preprocessing)."""
    pictures = pixels.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [encode_png(Image.fromarray(img), ONLINE_PNG_LEVEL) for img in pictures]


#: torch.cpu's probes of the CPU's bf16 units (private API), by the name a run's records give them
_BF16_UNITS = {"AMX": "_is_amx_tile_supported", "AVX-512 BF16": "_is_avx512_bf16_supported"}


def _bf16_units() -> list[str]:
    return [name for name, probe in _BF16_UNITS.items() if getattr(torch.cpu, probe, lambda: False)()]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: CUDA, or a CPU with AMX or AVX-512 BF16 (oneDNN's
    bf16 convolutions; measured 1.6x faster than float32 for the default student's training step on
    this project's 2-core AMX machine). Elsewhere bf16 is emulated and slower than float32."""
    if device.type == "cuda":
        return True
    return device.type == "cpu" and bool(_bf16_units())


@cache
def machine(device: torch.device) -> str:
    """What computed a run, as its records state it (e.g. ``AMD EPYC (AVX-512 BF16), torch 2.14.1``): a run
    is bit-reproducible on the same kind of machine, not across kinds (their bf16 and float32 kernels sum
    in other orders: the demo's ERM read 86.3 on an Intel CPU with AMX and 87.1 on an AMD one), so a
    protocol resumed on other machines says which runs each made."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    return f"{model} ({' + '.join(_bf16_units()) or 'no bf16 units'}), torch {torch.__version__}"


def precision(device: torch.device, amp: bool) -> str:
    """What a run on ``device`` computes in: ``bf16`` (autocast, float32 weights and losses) or ``fp32``."""
    return "bf16" if amp and native_bf16(device) else "fp32"


def autocast(device: torch.device, amp: bool):
    """bf16 autocast when ``amp`` and the device has bf16 in hardware; full precision otherwise."""
    if precision(device, amp) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, targets: Targets, amp: bool = True
) -> torch.Tensor:
    """One optimisation step of ``model`` (a method or its DDP wrapper); returns the detached loss
    without synchronising the device."""
    with autocast(x.device, amp):
        loss = model(x, targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# -------------------------------------------------------------------------------------- evaluation


class Evaluator:
    """The splits a run scores, decoded once, and a method's accuracy and loss on them.

    At every checkpoint: the source domains' "out" splits (the selection criterion, and the loss SWAD
    watches). At the end: every domain's "out" split and the target's "in" split."""

    def __init__(self, run: Run):
        self.run = run
        size = run.input_size
        self.pictures: dict[str, Any] = {}
        self.labels: dict[str, torch.Tensor] = {}
        self.samples: dict[str, list[Sample]] = {}
        for i, (split_in, split_out) in enumerate(run.splits):
            for name, samples in ((f"env{i}_out", split_out), (f"env{i}_in", split_in)):
                if name == f"env{i}_in" and i != run.test_env:
                    continue
                self.samples[name] = samples
                self.labels[name] = torch.tensor([s.label for s in samples], dtype=torch.long)
                if run.method.needs_student:
                    self.pictures[name] = load_images(run.data.root, samples, size, desc=f"decoding {name}")

    @torch.no_grad()
    def logits(self, method: Method, name: str) -> torch.Tensor:
        run, batch = self.run, int(self.run.hp["test_batch"])
        if method.needs_teacher_at_eval:
            emb = run.teacher_eval_embeddings(self.samples[name]).to(run.device)
            return torch.cat([method.logits(None, emb[i : i + batch]) for i in range(0, len(emb), batch)]).float().cpu()
        out = []
        for start in range(0, len(self.labels[name]), batch):
            index = torch.arange(start, min(start + batch, len(self.labels[name])))
            x = normalise(resize(self.pictures[name][index].to(run.device), run.input_size), run.mean, run.std)
            with run.autocast():
                out.append(method.logits(run.to_device(x)).float().cpu())
        return torch.cat(out)

    def score(self, method: Method, names: Sequence[str]) -> dict[str, float]:
        """``{name}_acc`` for each split, plus the selection criterion over the source "out" splits:
        ``source_val_acc`` (mean accuracy) and ``source_val_loss`` (mean cross-entropy)."""
        was_training = method.training
        method.eval()
        scores: dict[str, float] = {}
        losses = []
        for name in names:
            if not len(self.labels[name]):
                scores[f"{name}_acc"] = float("nan")
                continue
            logits = self.logits(method, name)
            scores[f"{name}_acc"] = float((logits.argmax(1) == self.labels[name]).float().mean())
            if name in self.run.source_val_splits:
                losses.append(float(F.cross_entropy(logits, self.labels[name])))
        method.train(was_training)
        scores["source_val_acc"] = float(np.mean([scores[f"{n}_acc"] for n in self.run.source_val_splits]))
        scores["source_val_loss"] = float(np.mean(losses)) if losses else float("nan")
        return scores


# --------------------------------------------------------------------------------------------- run


class Run:
    """One run's state: data, method, teacher targets, and its folder."""

    def __init__(
        self,
        spec: RunSpec,
        out: str | Path,
        online_teacher: ImageTeacher | None = None,
        stop_after: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ):
        self._started, self._resumed_seconds = time.perf_counter(), 0.0  # the clock of `run_seconds`
        if spec.teacher_mode not in TEACHER_MODES:
            raise UsageError(f"teacher mode must be one of {TEACHER_MODES}, got {spec.teacher_mode!r}")
        if spec.teacher_mode == "online" and online_teacher is None:
            raise UsageError("--teacher-mode online needs a vendor to query (see `vl2v distill --help`)")
        if spec.budget is not None:  # before anything is built: a budget is checked, never ignored
            check_budget(spec.budget)
            if not spec.teacher:
                raise UsageError(
                    "a budget keeps a fraction of a teacher set's image embeddings: the run has no teacher set"
                )
        self.spec, self.online = spec, online_teacher if spec.teacher_mode == "online" else None
        self.stop_after = stop_after  # global step after whose checkpoint to stop, resumably
        self.rank, self.world = _distributed()
        self.on_progress = on_progress if self.rank == 0 else None  # one bar, not one per DDP rank
        self.source_val_acc: float | None = None  # at the last checkpoint, for on_progress
        self.folder = RunFolder(out, self.rank)
        self.device = torch.device(
            f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
        )
        self.data = open_dataset(spec.data, spec.dataset)
        self.test_env = self.data.domain_index(spec.test_domain)
        self.splits = [self.data.split(d, spec.seed) for d in self.data.domains]
        self.sources = [i for i in range(len(self.data.domains)) if i != self.test_env]
        self.source_val_splits = [f"env{i}_out" for i in self.sources]
        self.hp = resolve_hparams(spec.method, spec.profile, self.data.name, spec.hparams)
        self.teacher = TeacherSet.load(spec.teacher) if spec.teacher else None
        if self.teacher is not None and self.teacher.classes != self.data.classes:
            raise UsageError(
                f"teacher set classes {self.teacher.classes} differ from the dataset's {self.data.classes}"
            )
        text = torch.from_numpy(np.asarray(self.teacher.text_embeddings, dtype=np.float32)) if self.teacher else None
        self.logit_scale = (
            float(self.teacher.meta.get("logit_scale") or CLIP_LOGIT_SCALE) if self.teacher else CLIP_LOGIT_SCALE
        )
        cls = method_class(spec.method, has_text=text is not None)
        torch.manual_seed(seed_hash("init", spec.seed))  # the head's initialisation
        self.student = create_student(spec.student, spec.pretrained) if cls.needs_student else None
        self.method: Method = create_method(
            spec.method,
            student=self.student,
            text_embeddings=text,
            num_classes=len(self.data.classes),
            hparams=self.hp,
            logit_scale=self.logit_scale,
        )
        self.method.to(self.device, memory_format=torch.channels_last)
        self.input_size = self.student.input_size if self.student else 0
        self.mean, self.std = (self.student.mean, self.student.std) if self.student else ((0.0,) * 3, (1.0,) * 3)
        self.queries_texts = sum(len(p) for p in self.teacher.prompts) if self.teacher else 0
        self.queries_eval_images = 0
        self.tables = self._tables()
        self.view_seed = view_seed(
            self.teacher, list(self.tables.values())
        )  # refuses a set whose views cannot be redrawn
        if (
            self.online is None
            and not self.method.learns_without_images
            and not any(t.paid for t in self.tables.values())
        ):
            raise UsageError(
                f"{spec.method} learns only from teacher image embeddings and this run has none "
                "(budget 0 or no teacher set)"
            )
        self.swad: LossValley | None = None  # the final stage's window search, once that stage runs

    def _tables(self) -> dict[int, TeacherTable]:
        """The bought embeddings of each source domain's "in" split that this run may use."""
        spec, teacher = self.spec, self.teacher
        use_cache = teacher is not None and self.method.uses_teacher_images and self.online is None
        keep = None
        if spec.budget is not None and teacher is not None:
            keep = budget_keep([s for i in self.sources for s in self.splits[i][0]], teacher, spec.budget, spec.seed)
        dim = teacher.dim if teacher else 1
        return {i: TeacherTable(self.splits[i][0], teacher if use_cache else None, dim, keep) for i in self.sources}

    @cached_property
    def evaluator(self) -> Evaluator:
        """The scored splits, decoded on first use (a finished run decodes nothing)."""
        return Evaluator(self)

    @cached_property
    def batches(self) -> SourceBatches:
        """The source domains' training inputs, decoded on first use."""
        domains = []
        for i in self.sources:
            samples = self.splits[i][0]
            domains.append(
                SourceDomain(
                    images=load_images(
                        self.data.root, samples, self.input_size, desc=f"decoding {self.data.domains[i]}"
                    ),
                    labels=torch.tensor([s.label for s in samples], dtype=torch.long),
                    table=self.tables[i],
                    views=view_pictures(self.data.root, samples, self.tables[i], self.view_seed, self.input_size),
                )
            )
        augment = BatchAugment(self.input_size, self.mean, self.std)
        return SourceBatches(domains, augment, int(self.hp["batch_per_domain"]), self.device)

    # -------------------------------------------------------------------------------------- helpers

    def autocast(self):
        return autocast(self.device, bool(self.hp["amp"]))

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """Channels-last (faster convolutions, measured on CPU and CUDA), asynchronously from pinned
        memory on CUDA."""
        cuda = self.device.type == "cuda"
        return x.to(self.device, non_blocking=cuda, memory_format=torch.channels_last)

    def _all_ranks(self, count: int) -> int:
        """``count`` summed over the ranks of a ``torchrun`` job: each rank buys the online views of its
        own batches, and the record (written by rank 0) and the checkpoint must hold them all."""
        if not dist.is_initialized():
            return count
        total = torch.tensor([count], dtype=torch.long, device=self.device)
        dist.all_reduce(total)
        return int(total.item())

    def _step_inputs(self, stage_index: int, step: int) -> tuple[torch.Tensor, Targets, int]:
        """The inputs and targets of one step (seeded by run seed, stage, step and rank) and the image
        queries they cost (online mode only)."""
        batch = self.batches.batch(seed_hash(self.spec.seed, stage_index, step, self.rank))
        image, has_image, paid = batch.image, batch.has_image, 0
        if self.online is not None and self.method.uses_teacher_images:
            before = getattr(self.online, "paid", None)
            vectors = self.online.embed_images(png_bytes(batch.pixels))
            image, has_image = (
                torch.from_numpy(np.asarray(vectors, dtype=np.float32)),
                torch.ones(len(batch.labels), dtype=torch.bool),
            )
            paid = len(batch.labels) if before is None else self.online.paid - before  # what the vendor charged
        x = self.to_device(normalise(batch.pixels, self.mean, self.std))
        cuda = self.device.type == "cuda"
        targets = Targets(*(t.to(self.device, non_blocking=cuda) for t in (batch.labels, image, has_image)))
        return x, targets, paid

    def teacher_eval_embeddings(self, samples: Sequence[Sample]) -> torch.Tensor:
        """The teacher's embeddings of evaluated images (zero-shot): from the teacher set, else bought
        online; either way counted as evaluation queries, apart from the training budget."""
        vecs: list[np.ndarray | None] = [
            self.teacher.image_embedding(s.path) if self.teacher else None for s in samples
        ]
        missing = [i for i, v in enumerate(vecs) if v is None]
        if missing and self.online is None:
            raise UsageError(
                f"zero_shot needs the teacher's embedding of every evaluated image; {len(missing)} of {len(samples)} "
                f"are not in the teacher set (embed all domains, or use --teacher-mode online)"
            )
        if missing:
            bought = self.online.embed_images([(self.data.root / samples[i].path).read_bytes() for i in missing])
            for i, v in zip(missing, bought, strict=True):
                vecs[i] = np.asarray(v)[None]
        self.queries_eval_images += len(samples)
        return torch.from_numpy(np.stack([np.asarray(v[0], dtype=np.float32) for v in vecs]))

    def _record(self, model: str, stage: str, stage_index: int, stage_step: int, scores: dict, extra: dict) -> dict:
        n_stages = max(1, len(self.method.stages))
        offset = int(self.hp["steps"]) * stage_index
        return {
            "model": model,
            "step": offset + stage_step,
            "stage": stage,
            "stage_index": stage_index,
            "n_stages": n_stages,
            "stage_step": stage_step,
            **scores,
            "test_env": self.test_env,
            "test_domain": self.spec.test_domain,
            "domains": self.data.domains,
            "dataset": self.data.name,
            "target_split": "in",
            "queries_texts": self.queries_texts,
            "queries_eval_images": self.queries_eval_images,
            "logit_scale": self.logit_scale,
            "world_size": self.world,
            "precision": precision(self.device, bool(self.hp["amp"])),
            "machine": machine(self.device),
            "run_seconds": round(self._seconds(), 1),
            **extra,
            "args": self.spec.to_dict(),
            "hparams": self.hp,
        }

    def _seconds(self) -> float:
        """Seconds this run's processes have run, this one since it started (setting up included) and
        its earlier ones up to their last checkpoint: what the run cost, whatever interrupted it."""
        return self._resumed_seconds + time.perf_counter() - self._started

    def _paid_cached(self) -> dict[str, int]:
        return {
            "budget_images": sum(t.bought for t in self.tables.values()),
            "source_images": sum(len(self.splits[i][0]) for i in self.sources),
        }

    # ----------------------------------------------------------------------------------------- main

    def run(self) -> dict | None:
        """Train every stage (resuming if a checkpoint exists), score the output models and return the
        run's result record (None if stopped early by ``stop_after``)."""
        self.folder.claim(self.spec.to_dict())
        if self.folder.done:
            return select(self.folder.records())
        state = self.folder.resume() if self.rank == 0 else None
        if self.world > 1:  # every rank resumes from rank 0's state
            box = [state]
            dist.broadcast_object_list(box, src=0)
            state = box[0]
        pos = Position(**state["position"]) if state else Position()
        self._resumed_seconds = pos.seconds
        for index, stage in enumerate(self.method.stages):
            if index < pos.stage_index:
                continue
            if not self._train_stage(index, stage, pos, state if index == pos.stage_index else None):
                return None
            pos, state = Position(stage_index=index + 1, queries_images=pos.queries_images), None
        if self.rank == 0:
            total = int(self.hp["steps"]) * len(self.method.stages)
            self._tell(total, "scoring")
            self._finish(pos.queries_images)
        self.folder.mark_done()
        _barrier()
        return select(self.folder.records())

    def _tell(self, step: int, stage: str) -> None:
        """Tell ``on_progress`` (if any) that ``step`` steps of every stage together are done."""
        if self.on_progress is not None:
            total = int(self.hp["steps"]) * len(self.method.stages)
            self.on_progress(Progress(step, total, stage, self.source_val_acc))

    def _finish(self, online_queries: int) -> None:
        """Score the models the run outputs on every split and record them."""
        names = [f"env{i}_out" for i in range(len(self.data.domains))] + [f"env{self.test_env}_in"]
        paid = {"queries_images": online_queries + sum(t.paid for t in self.tables.values()), **self._paid_cached()}
        if not self.method.stages:  # zero-shot: the teacher itself
            scores = self.evaluator.score(self.method, names)
            self.folder.append(self._record("teacher", "predict", 0, 0, scores, paid))
            return
        last = len(self.method.stages) - 1
        stage = self.method.stages[last].name
        best = best_checkpoint(self.folder.records(), last)
        self.method.load_state_dict(self.folder.load(f"best_{stage}.pt", self.device))
        scores = self.evaluator.score(self.method, names)
        self.folder.append(self._record("best", stage, last, best["stage_step"], scores, paid))
        if self.swad is not None:
            weights = self.swad.final_weights()
            self.folder.save(weights, SWAD_WEIGHTS)
            averaged = averaged_copy(self.method, weights)
            scores = self.evaluator.score(averaged, names)
            self.folder.append(
                self._record("swad", stage, last, int(self.hp["steps"]), scores, {**paid, "swad": self.swad.summary()})
            )

    def _train_stage(self, index: int, stage: Stage, pos: Position, state: dict | None) -> bool:
        """Train one stage to its end (True) or until ``stop_after`` (False), a segment of
        ``checkpoint_freq`` steps at a time, each ended by a checkpoint."""
        loop = self._start_stage(index, stage, state)
        n, freq = int(self.hp["steps"]), int(self.hp["checkpoint_freq"])
        step = pos.stage_step
        self._tell(index * n + step, stage.name)
        while step < n:
            end = min((step // freq + 1) * freq, n)
            t0, losses, paid = time.perf_counter(), [], 0
            for i in range(step, end):
                x, targets, cost = self._step_inputs(index, i)
                losses.append(train_step(loop.model, loop.optimizer, x, targets, bool(self.hp["amp"])))
                paid += cost
                if loop.segment is not None:
                    loop.segment.update(i + 1)
                self._tell(index * n + i + 1, stage.name)
            step = end
            pos.queries_images += self._all_ranks(paid)
            if self.rank == 0:
                speed = len(losses) * len(x) / max(time.perf_counter() - t0, 1e-9)
                self._checkpoint(loop, step, pos.queries_images, float(torch.stack(losses).float().mean()), speed)
            _barrier()
            if self.stop_after is not None and index * n + step >= self.stop_after:
                return False
        return True

    def _start_stage(self, index: int, stage: Stage, state: dict | None) -> StageLoop:
        """Freeze what the stage does not train, load its starting weights (the checkpoint being
        resumed, else the previous stage's best where the stage starts from it), and build a fresh
        optimizer (and SWAD's window search in the final stage), restored from the checkpoint if any."""
        method, hp = self.method, self.hp
        method.set_stage(stage)
        if state is not None:
            method.load_state_dict(state["model"])
        elif stage.init_from_best:
            method.load_state_dict(self.folder.load(f"best_{method.stages[index - 1].name}.pt", self.device))
        method.train()
        optimizer = torch.optim.Adam(
            method.trainable_parameters(), lr=float(hp["lr"]), weight_decay=float(hp["weight_decay"])
        )
        model: torch.nn.Module = method
        if dist.is_initialized():
            model = torch.nn.parallel.DistributedDataParallel(
                method, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        swad = None
        if hp["swad"] and index == len(method.stages) - 1:
            swad = LossValley(
                int(hp["swad_n_converge"]), int(hp["swad_n_tolerance"]), float(hp["swad_tolerance_ratio"])
            )
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            if swad is not None and state.get("swad") is not None:
                swad.load_state_dict(state["swad"])
        self.swad = swad
        segment = SegmentAverage(method) if swad is not None and self.rank == 0 else None
        best = best_checkpoint(self.folder.records(), index) if self.rank == 0 else None
        return StageLoop(index, stage, model, optimizer, swad, segment, best)

    def _checkpoint(self, loop: StageLoop, step: int, online_queries: int, loss: float, speed: float) -> None:
        """Score source validation, record it, keep the stage's best weights by the one rule of
        :mod:`~client_distill.train.model_selection`, close SWAD's segment and save the resumable state."""
        method, stage = self.method, loop.stage
        extra = {
            "loss": loss,
            "queries_images": online_queries
            + sum(t.paid for t in self.tables.values()),  # online: per view; cached: the set
            **self._paid_cached(),
            "images_per_s": speed,
        }
        record = self._record(
            "checkpoint", stage.name, loop.index, step, self.evaluator.score(method, self.source_val_splits), extra
        )
        self.folder.append(record)
        self.source_val_acc = record["source_val_acc"]
        self._tell(loop.index * int(self.hp["steps"]) + step, stage.name)
        pending = []
        if is_better(record, loop.best):
            loop.best = record
            pending.append(f"best_{stage.name}.pt")
            self.folder.save(method.state_dict(), pending[-1] + ".new")
        if loop.swad is not None:
            loop.swad.add(loop.segment.close(step, record["source_val_loss"]))
        state = {
            "position": asdict(Position(loop.index, step, online_queries, pending, self._seconds())),
            "model": method.state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "swad": loop.swad.state_dict() if loop.swad else None,
        }
        self.folder.save_checkpoint(state, pending)


def run_distill(
    spec: RunSpec,
    out: str | Path,
    online_teacher: ImageTeacher | None = None,
    stop_after: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict | None:
    """Run (or resume, or skip if ``done``) one distillation run; returns its result record.
    ``stop_after`` stops at the first checkpoint at or after that global step, without ``done``;
    ``on_progress`` is told where the run stands (:class:`Progress`)."""
    return Run(spec, out, online_teacher, stop_after, on_progress).run()
