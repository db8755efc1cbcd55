"""Images/s of the distill loop against the raw student train step, side by side in one run.

"Raw" is the cheapest useful training step of the same student: features → linear classifier → CE →
backward → Adam, on one pre-built, already normalised batch. Two distill figures, both ADiP's Distill
stage (frozen projection head, cosine loss to the teacher's image and text embeddings, backward, Adam)
through the functions ``vl2v distill`` calls:

- ``method``: on pre-built tensors (the method's own overhead);
- ``end-to-end`` (the default student's real path): uint8 images held in memory as the run holds them,
  each step drawing ``batch_per_domain`` per source domain, augmenting the batch
  (:class:`~client_distill.train.augment.BatchAugment`: crop, flip, colour jitter, greyscale), pairing each
  input with its bought embedding (:class:`~client_distill.train.pairing.SourceBatches`), normalising and
  moving it to the device; twice: with the augmentation compiled (as a sweep's runs have it,
  :func:`~client_distill.train.augment.warm_up`) and eager (a single run's default).

The four are interleaved step by step, rotating the order, so that load from other processes hits them
alike; medians are reported. Compiling the augmentation first takes 30–90 s (not timed).

    python bench/distill_throughput.py                     # CPU: the default student at 64 px, 3×16 images/step
    python bench/distill_throughput.py --student resnet50 --size 224 --batch-per-domain 32 --steps 30   # the GPU check

Target: end-to-end (compiled) / raw ≥ 0.90.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import Sample
from client_distill.methods.base import Targets
from client_distill.methods.registry import create_method
from client_distill.train import augment
from client_distill.train.augment import BatchAugment, normalise
from client_distill.train.heap import keep_freed_memory
from client_distill.train.hparams import resolve_hparams
from client_distill.train.pairing import SourceBatches, SourceDomain, TeacherTable
from client_distill.train.pretrain_student_config import DEFAULT_ARCH
from client_distill.train.run import autocast, precision, train_step
from client_distill.train.students import create_student


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", default=DEFAULT_ARCH, help="student name (random init)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--domains", type=int, default=3, help="source domains")
    p.add_argument("--batch-per-domain", type=int, default=16)
    p.add_argument("--images", type=int, default=600, help="images held per source domain")
    p.add_argument("--dim", type=int, default=128, help="teacher embedding dimension")
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--steps", type=int, default=20, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--fp32", action="store_true", help="full precision (as the hparam amp=false)")
    p.add_argument(
        "--glibc-heap", action="store_true", help="leave glibc's heap settings as they are (runs keep freed memory)"
    )
    args = p.parse_args()
    kept = False if args.glibc_heap else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = not args.fp32  # as a run's default hparams: bf16 where the device has it in hardware
    torch.manual_seed(0)
    bpd, n = args.batch_per_domain, args.images
    batch = args.domains * bpd

    # what a run holds: decoded uint8 pictures and a teacher table per source domain (every image bought)
    samples = [Sample(f"d/c/{i}.png", i % args.classes, "d") for i in range(n)]
    emb = F.normalize(torch.randn(n, 1, args.dim), dim=-1).numpy().astype(np.float16)
    text = F.normalize(torch.randn(args.classes, args.dim), dim=-1)
    teacher = TeacherSet(
        classes=[str(c) for c in range(args.classes)],
        prompts=[],
        text_embeddings=text.numpy(),
        image_embeddings={s.path: emb[i] for i, s in enumerate(samples)},
    )
    labels = torch.tensor([s.label for s in samples])
    domains = [
        SourceDomain(
            torch.randint(0, 256, (n, 3, args.size, args.size), dtype=torch.uint8),
            labels,
            TeacherTable(samples, teacher, args.dim),
        )
        for _ in range(args.domains)
    ]

    def adip_stage():
        hp = resolve_hparams("adip", overrides={"amp": amp})
        student = create_student(args.student, pretrained=False)
        method = create_method("adip", student=student, text_embeddings=text, num_classes=args.classes, hparams=hp)
        method.to(device, memory_format=torch.channels_last).set_stage(method.stages[1])
        method.train()
        return method, torch.optim.Adam(method.trainable_parameters(), lr=hp["lr"]), student

    e2e, opt_e, student = adip_stage()
    batches = SourceBatches(domains, BatchAugment(args.size, student.mean, student.std), bpd)
    tensors, opt_m, _ = adip_stage()
    # raw: the same student architecture, linear classifier, CE, one pre-built batch on the device
    raw_student = (
        create_student(args.student, pretrained=False).freeze_bn().to(device, memory_format=torch.channels_last)
    )
    raw_head = torch.nn.Linear(raw_student.feature_dim, args.classes).to(device)
    opt_r = torch.optim.Adam([*raw_student.parameters(), *raw_head.parameters()], lr=1e-4)
    fixed = batches.batch(0)
    raw_x = normalise(fixed.pixels, student.mean, student.std).to(device, memory_format=torch.channels_last)
    fixed_targets = Targets(*(t.to(device) for t in (fixed.labels, fixed.image, fixed.has_image)))

    def raw_step():
        with autocast(device, amp):
            loss = F.cross_entropy(raw_head(raw_student(raw_x)).float(), fixed_targets.labels)
        opt_r.zero_grad(set_to_none=True)
        loss.backward()
        opt_r.step()

    def method_step():
        train_step(tensors, opt_m, raw_x, fixed_targets, amp)

    seeds = iter(range(1, 10**9))

    def end_to_end_step(fast: bool):  # what Run._step_inputs and the loop do per step
        with contextlib.nullcontext() if fast else augment.eager():
            b = batches.batch(next(seeds))
        x = normalise(b.pixels, student.mean, student.std).to(
            device, non_blocking=True, memory_format=torch.channels_last
        )
        targets = Targets(*(t.to(device, non_blocking=True) for t in (b.labels, b.image, b.has_image)))
        train_step(e2e, opt_e, x, targets, amp)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    compiled = augment.warm_up()
    sides = {
        "raw": raw_step,
        "method": method_step,
        "end-to-end": lambda: end_to_end_step(True),
        "end-to-end, eager": lambda: end_to_end_step(False),
    }
    for _ in range(args.warmup):
        for fn in sides.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for i in range(args.steps):  # interleaved, rotating which goes first: contention hits all alike
        for name in order[i % len(order) :] + order[: i % len(order)]:
            times[name].append(timed(sides[name]))
    ips = {name: batch / statistics.median(t) for name, t in times.items()}
    print(
        f"device {device} ({precision(device, amp)}), {torch.get_num_threads()} threads, "
        f"student {args.student} (random init), {args.size} px, "
        f"{args.domains}×{bpd} images/step, {args.steps} timed steps each (median), "
        f"freed memory {'kept' if kept else 'given back (glibc defaults)'}"
    )
    print(f"{'raw student train step':<36}: {ips['raw']:8.1f} images/s  ({ips['raw'] / batch:.2f} steps/s)")
    print(f"{'distill, method on tensors':<36}: {ips['method']:8.1f} images/s  ratio {ips['method'] / ips['raw']:.3f}")
    for name in ("end-to-end", "end-to-end, eager"):
        label = f"distill, {name}" + (" (compiled)" if name == "end-to-end" and compiled else "")
        print(
            f"{label:<36}: {ips[name]:8.1f} images/s  ({ips[name] / batch:.2f} steps/s)  "
            f"ratio {ips[name] / ips['raw']:.3f}"
        )
    print("target: end-to-end (compiled) / raw ≥ 0.90" + ("" if compiled else "; the augmentation did not compile"))


if __name__ == "__main__":
    main()
