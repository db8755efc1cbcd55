"""Images/s of the distill loop against the raw student train step, side by side, on synthetic tensors.

"Raw" is the cheapest useful training step of the same student: features → linear classifier → CE →
backward → Adam, on one pre-built batch. "Distill" is what ``vl2v distill`` runs per step of ADiP's
Distill stage: the per-domain minibatches concatenated, each image's teacher embedding looked up in
the bought table, the frozen projection head, the cosine loss, backward, Adam — via
the same functions the run loop calls (``cached_batch``, ``to_device``, ``train_step``). Data
decoding is excluded from both (synthetic tensors), so the ratio isolates the method's overhead.
The two are interleaved round by round so that load from other processes hits both alike.

    python bench/distill_throughput.py                          # CPU: resnet18, 64 px, 3×32 images/step
    python bench/distill_throughput.py --student resnet50 --size 224 --steps 30   # the GPU check

Target: distill / raw ≥ 0.80.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from client_distill.datasets import Sample
from client_distill.hparams import resolve_hparams
from client_distill.methods import Targets, create_method
from client_distill.students import create_student
from client_distill.teacher_set import TeacherSet
from client_distill.train import TeacherTable, autocast, cached_batch, to_device, train_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", default="resnet18", help="student name (random init)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--domains", type=int, default=3, help="source domains")
    p.add_argument("--batch-per-domain", type=int, default=32)
    p.add_argument("--dim", type=int, default=512, help="teacher embedding dimension")
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--steps", type=int, default=10, help="timed steps per side")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp = device.type == "cuda"
    torch.manual_seed(0)
    bpd, n = args.batch_per_domain, args.domains * args.batch_per_domain * 4

    # teacher table: every source image bought, 2 views each
    samples = [Sample(f"d/c/{i}.png", i % args.classes, "d") for i in range(n)]
    emb = F.normalize(torch.randn(n, 2, args.dim), dim=-1).numpy().astype(np.float16)
    text = F.normalize(torch.randn(args.classes, args.dim), dim=-1).numpy()
    teacher = TeacherSet(classes=[str(c) for c in range(args.classes)], prompts=[], text_embeddings=text, image_embeddings={s.path: emb[i] for i, s in enumerate(samples)})
    tables = [TeacherTable(samples, teacher, args.dim) for _ in range(args.domains)]
    pool = torch.randn(n, 3, args.size, args.size)
    labels = torch.tensor([s.label for s in samples])
    if device.type == "cuda":
        pool, labels = pool.pin_memory(), labels.pin_memory()

    def domain_batches(g: torch.Generator):
        out = []
        for _ in range(args.domains):
            idx = torch.randint(0, n, (bpd,), generator=g)
            out.append((pool[idx], labels[idx], idx, torch.randint(0, 2, (bpd,), generator=g)))  # the view each input is
        return out

    # distill: ADiP's Distill stage through the run loop's functions
    hp = resolve_hparams("adip", overrides={"amp": amp})
    student = create_student(args.student, pretrained=False).to(device)
    adip = create_method("adip", student=student, text_embeddings=torch.from_numpy(text), num_classes=args.classes, hparams=hp).to(device)
    adip.set_stage(adip.stages[1])
    adip.train()
    opt_d = torch.optim.Adam(adip.trainable_parameters(), lr=hp["lr"])
    # raw: the same student architecture, linear classifier, CE, one pre-built batch on the device
    raw_student = create_student(args.student, pretrained=False).to(device)
    raw_student.freeze_bn()
    raw_head = torch.nn.Linear(raw_student.feature_dim, args.classes).to(device)
    opt_r = torch.optim.Adam([*raw_student.parameters(), *raw_head.parameters()], lr=hp["lr"])
    if device.type == "cuda":
        adip.to(memory_format=torch.channels_last)
        raw_student.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    raw_x, raw_y = pool[: args.domains * bpd].to(device, memory_format=fmt), labels[: args.domains * bpd].to(device)

    def raw_step():
        with autocast(device, amp):
            loss = F.cross_entropy(raw_head(raw_student(raw_x)).float(), raw_y)
        opt_r.zero_grad(set_to_none=True)
        loss.backward()
        opt_r.step()

    g = torch.Generator().manual_seed(0)

    def distill_step():
        x, y, image, has = cached_batch(domain_batches(g), tables)
        x, targets = to_device(x, Targets(y, image, has), device)
        train_step(adip, opt_d, x, targets, amp)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        raw_step(), distill_step()
    raw_t, dist_t = [], []
    for i in range(args.steps):  # interleaved, alternating which goes first: contention hits both alike
        pair = [(raw_t, raw_step), (dist_t, distill_step)]
        for times, fn in pair if i % 2 == 0 else pair[::-1]:
            times.append(timed(fn))
    batch = args.domains * bpd
    raw_ips, dist_ips = batch / statistics.median(raw_t), batch / statistics.median(dist_t)
    print(f"device {device}, student {args.student} (random init), {args.size} px, {args.domains}×{bpd} images/step, {args.steps} timed steps each (median)")
    print(f"raw student train step : {raw_ips:8.1f} images/s")
    print(f"distill loop (ADiP)    : {dist_ips:8.1f} images/s")
    print(f"ratio distill / raw    : {dist_ips / raw_ips:.3f}  (target ≥ 0.80)")


if __name__ == "__main__":
    main()
