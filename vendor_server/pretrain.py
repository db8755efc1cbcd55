"""The vendor's own pretraining of ``vl2v-tiny`` on the synthetic world's captioned corpus.

Why this recipe: contrastive captions alone learn far too slowly on a 2-core CPU (see the calibration
notes), so alongside open_clip's :class:`~open_clip.loss.ClipLoss` on (image, caption) pairs the model
is also trained to pick its class among the text embeddings of *class prompts* for all classes (a
cross-entropy whose classifier is the text tower itself). Both objectives are CLIP-style: the model
stays a plain open_clip CLIP that scores any text. At random init, though, every class prompt embeds
to nearly the same vector (cosine ≈ 0.996 after 100 steps, measured), so those gradients vanish and
nothing learns; a third, temporary loss breaks the tie: cosine class prototypes on the image
embeddings (thrown away at the end), which cluster images by class at once and so give the text tower
distinct targets to align with. Images come from a pool rendered once (all classes ×
all styles) and reused with cheap shifts; captions are drawn afresh each step from the images' attributes.

Training is resumable: state goes to ``<out>.work/`` every ``checkpoint_every`` steps and a rerun of the
same command continues from there. Batch sampling is a function of ``(seed, step)`` only, so a resumed run
sees the same batches; CPU kernels are still not bitwise deterministic across thread counts.
"""

from __future__ import annotations

import math
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from PIL import Image
from tqdm import tqdm

from shared.world import CLASS_NAMES, STYLE_NAMES, TASKS, caption
from shared.world.captions import STYLE_PHRASES
from shared.world.streams import Stream, stream_rng
from shared.world.writer import render_cell
from vendor_server.model_configs import register_model_configs
from vendor_server.pretrain_config import PretrainConfig
from vendor_server.settings import DEFAULT_MODEL as MODEL_NAME

#: the prompt the zero-shot target is measured with
ZERO_SHOT_TEMPLATE = "a photo of a {}"
#: temperature of the temporary class prototypes (a fixed cosine-classifier scale)
PROTOTYPE_SCALE = 16.0


def create_model() -> tuple[torch.nn.Module, object]:
    """A randomly initialised ``vl2v-tiny`` and its tokenizer."""
    register_model_configs()
    return open_clip.create_model(MODEL_NAME), open_clip.get_tokenizer(MODEL_NAME)


#: the style every class has in the corpus whatever ``cell_coverage`` says
ALWAYS_COVERED = "photo"


def covered_cells(coverage: float) -> list[tuple[str, str]]:
    """The (style, class) cells a corpus of ``coverage`` holds: every photo cell, and each other cell
    when a draw keyed by the cell alone falls under ``coverage``."""
    return [
        (s, c)
        for s in STYLE_NAMES
        for c in CLASS_NAMES
        if s == ALWAYS_COVERED
        or stream_rng(Stream.VENDOR, 0xC0FE, STYLE_NAMES.index(s), CLASS_NAMES.index(c)).random() < coverage
    ]


def render_pool(cfg: PretrainConfig) -> dict:
    """``per_cell`` images of each covered (style, class) cell (:func:`covered_cells`), as uint8
    ``[N, H, W, 3]`` plus labels: the vendor's own stream, which no client task or student corpus is
    drawn from."""
    jobs = [(Stream.VENDOR, cfg.seed, s, c, cfg.per_cell, cfg.size) for s, c in covered_cells(cfg.cell_coverage)]
    images, attrs, labels, styles = [], [], [], []
    with (
        ProcessPoolExecutor(cfg.workers) as pool,
        tqdm(total=len(jobs) * cfg.per_cell, desc="rendering corpus", unit="img") as bar,
    ):
        for (_, _, s, c, _, _), (imgs, a) in zip(
            jobs, pool.map(render_cell, *zip(*jobs, strict=True), chunksize=4), strict=True
        ):
            images.append(imgs)
            attrs += a
            labels += [CLASS_NAMES.index(c)] * len(a)
            styles += [s] * len(a)
            bar.update(len(a))
    return {
        "images": torch.from_numpy(np.concatenate(images)),
        "attrs": attrs,
        "labels": torch.tensor(labels),
        "styles": styles,
    }


class _Normalise:
    """uint8 NHWC → normalised float NCHW with the model's own preprocessing constants."""

    def __init__(self, model: torch.nn.Module):
        pp = open_clip.get_model_preprocess_cfg(model)
        self.mean = torch.tensor(pp.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
        self.std = torch.tensor(pp.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.permute(0, 3, 1, 2).float() / 255 - self.mean) / self.std


def _augment(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (reflect-padded crop): cheap and label-safe."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="reflect")
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def _class_prompts(rng: np.random.Generator) -> list[str]:
    """The zero-shot prompt plus one random style's phrasing, for every class."""
    style = STYLE_NAMES[rng.integers(len(STYLE_NAMES))]
    lead = STYLE_PHRASES[style][rng.integers(len(STYLE_PHRASES[style]))]
    article = lambda c: ("an " if c[0] in "aeiou" else "a ") + c  # noqa: E731
    return [ZERO_SHOT_TEMPLATE.format(c) for c in CLASS_NAMES] + [f"{lead} {article(c)}" for c in CLASS_NAMES]


def _lr(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))


def _save_state(work: Path, model, prototypes, opt, step: int, cfg: PretrainConfig) -> None:
    tmp = work / "state.pt.tmp"
    torch.save(
        {
            "model": model.state_dict(),
            "prototypes": prototypes.detach(),
            "opt": opt.state_dict(),
            "step": step,
            "config": asdict(cfg),
        },
        tmp,
    )
    tmp.replace(work / "state.pt")


def pretrain(out: Path, cfg: PretrainConfig, stop_after: int | None = None, log=print) -> dict:
    """Train ``vl2v-tiny`` and write an fp16, open_clip-loadable state dict to ``out``.

    Returns a summary (steps, seconds, steps/s, paused). Resumes from ``<out>.work/state.pt`` when its
    config matches ``cfg`` (otherwise refuses, so a stale run is never silently mixed in). With
    ``stop_after`` it stops at that step and keeps the resumable state instead (time-sliced training)."""
    out = Path(out)
    work = out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model, tokenizer = create_model()
    prototypes = torch.nn.Parameter(torch.randn(len(CLASS_NAMES), model.text_projection.shape[1]))
    if cfg.init:
        # continued pretraining: the prototypes start at the class prompts' text embeddings, so the
        # temporary loss agrees with what the model already knows instead of pulling images apart
        model.load_state_dict(
            {k: v.float() for k, v in torch.load(cfg.init, map_location="cpu", weights_only=True).items()}
        )
        with torch.no_grad():
            prototypes.copy_(model.encode_text(tokenizer([ZERO_SHOT_TEMPLATE.format(c) for c in CLASS_NAMES])))
    opt = torch.optim.AdamW([*model.parameters(), prototypes], lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    state_path = work / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["config"] != asdict(cfg):
            raise ValueError(f"{work} holds a run with different settings; delete it or use the same options")
        model.load_state_dict(state["model"])
        prototypes.data.copy_(state["prototypes"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
        log(f"resuming from step {start}")
    pool_path = work / "pool.pt"
    if pool_path.exists():
        pool = torch.load(pool_path, weights_only=False)
    else:
        pool = render_pool(cfg)
        torch.save(pool, pool_path)
    normalise, loss_fn = _Normalise(model), ClipLoss()
    n = len(pool["labels"])
    ce_styles = set(cfg.ce_styles.split(",")) if cfg.ce_styles else set(STYLE_NAMES)
    supervised = torch.tensor([s in ce_styles for s in pool["styles"]])
    model.train()
    end = cfg.steps if stop_after is None else max(start, min(stop_after, cfg.steps))
    t0 = time.time()
    with tqdm(total=cfg.steps, initial=start, desc="pretraining vl2v-tiny", unit="step") as bar:
        for step in range(start, end):
            rng = np.random.default_rng([cfg.seed, step])
            gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
            idx = torch.from_numpy(rng.choice(n, cfg.batch_size, replace=False))
            images = _augment(normalise(pool["images"][idx]), gen, max(1, cfg.size // 16))
            captions = [
                caption(CLASS_NAMES[pool["labels"][i]], pool["styles"][i], pool["attrs"][i], rng, cfg.context_said)
                for i in idx.tolist()
            ]
            texts = tokenizer(captions + _class_prompts(rng))
            for g in opt.param_groups:
                g["lr"] = _lr(step, cfg)
            img = F.normalize(model.encode_image(images), dim=-1)
            txt = F.normalize(model.encode_text(texts), dim=-1)
            scale = model.logit_scale.exp()
            cap, cls = txt[: cfg.batch_size], txt[cfg.batch_size :].view(2, len(CLASS_NAMES), -1)
            labels, rows = pool["labels"][idx], supervised[idx]
            if rows.any():
                ce = sum(F.cross_entropy(scale * img[rows] @ c.T, labels[rows]) for c in cls) / 2
                aux = F.cross_entropy(PROTOTYPE_SCALE * img[rows] @ F.normalize(prototypes, dim=-1).T, labels[rows])
            else:  # a batch without a supervised style: the caption loss alone
                ce = aux = img.sum() * 0
            loss = loss_fn(img, cap, scale) + cfg.ce_weight * ce + cfg.aux_weight * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", ce=f"{ce.item():.3f}", aux=f"{aux.item():.3f}")
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                _save_state(work, model, prototypes, opt, step + 1, cfg)
    seconds = time.time() - t0
    summary = {
        "steps": end - start,
        "train_seconds": round(seconds, 1),
        "steps_per_s": round((end - start) / max(seconds, 1e-9), 3),
        "paused": end < cfg.steps,
    }
    if summary["paused"]:
        _save_state(work, model, prototypes, opt, end, cfg)
        return summary
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, out)
    shutil.rmtree(work)
    return summary


def zero_shot(
    checkpoint: Path,
    task: str = "synth-pacs",
    per_class: int = 50,
    seed: int = 10_000,
    template: str = ZERO_SHOT_TEMPLATE,
) -> dict[str, float]:
    """Per-domain zero-shot accuracy of a checkpoint on held-out images of ``task`` (the vendor's stream
    with a seed its corpus never uses), through open_clip's own preprocessing as the server applies it."""
    register_model_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=str(checkpoint))
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    model.eval()
    t = TASKS[task]
    with torch.no_grad():
        text = F.normalize(model.encode_text(tokenizer([template.format(c) for c in t.classes])), dim=-1)
        result = {}
        for domain in t.domains:
            xs, ys = [], []
            for y, c in enumerate(t.classes):
                xs += [
                    preprocess(Image.fromarray(pixels))
                    for pixels in render_cell(Stream.VENDOR, seed, domain, c, per_class)[0]
                ]
                ys += [y] * per_class
            img = F.normalize(model.encode_image(torch.stack(xs)), dim=-1)
            result[domain] = float(((img @ text.T).argmax(1) == torch.tensor(ys)).float().mean())
    return result
