"""A *teacher set*: the teacher embeddings a client bought for one dataset, as versioned files.

It is what ``vl2v embed`` writes and what ``vl2v distill`` reads, so training never touches the
vendor or the cache and can run on another machine. Layout of a teacher-set folder::

    manifest.json       format, vendor, model and its revision (where the vendor reports one), dim, classes,
                        prompts, views, query counts, shard list
    texts.npy           float32 [C, D]   L2-normalised class text embeddings (prompt-averaged)
    images-00000.npy    float16 [n, K, D] L2-normalised image embeddings, K views per image (view 0 = the
                        un-augmented image)
    index.json          [{"path": "photo/dog/3.png", "shard": 0, "row": 12, "views": K}, ...]

Image vectors are stored as float16 (half the size; cosine error < 1e-3); text vectors as float32.
Paths are relative to the dataset root, with ``/`` separators, so a set is portable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from client_distill.errors import UsageError

FORMAT = "vl2v-teacher/1"
SHARD_ROWS = 50_000


@dataclass
class TeacherSet:
    """Class text embeddings plus the image embeddings bought so far, keyed by relative path."""

    classes: list[str]
    prompts: list[list[str]]
    text_embeddings: np.ndarray  # [C, D] float32, unit norm
    image_embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # path -> [K, D] float16
    meta: dict = field(default_factory=dict)  # vendor, model, model_revision, views, query counts, ...

    @property
    def dim(self) -> int:
        return int(self.text_embeddings.shape[1])

    def image_embedding(self, path: str) -> np.ndarray | None:
        """The [K, D] views bought for ``path`` (relative, ``/``-separated), or None if not bought."""
        return self.image_embeddings.get(path)

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "texts.npy", np.asarray(self.text_embeddings, dtype=np.float32))
        paths = sorted(self.image_embeddings)
        index, shards = [], []
        for shard_no, start in enumerate(range(0, len(paths), SHARD_ROWS)):
            chunk = paths[start : start + SHARD_ROWS]
            views = max(self.image_embeddings[p].shape[0] for p in chunk)
            arr = np.zeros((len(chunk), views, self.dim), dtype=np.float16)
            for row, p in enumerate(chunk):
                vecs = self.image_embeddings[p]
                arr[row, : vecs.shape[0]] = vecs
                index.append({"path": p, "shard": shard_no, "row": row, "views": int(vecs.shape[0])})
            name = f"images-{shard_no:05d}.npy"
            np.save(out / name, arr)
            shards.append(name)
        (out / "index.json").write_text(json.dumps(index))
        manifest = {
            "format": FORMAT,
            "classes": self.classes,
            "prompts": self.prompts,
            "dim": self.dim,
            "n_images": len(paths),
            "shards": shards,
            **self.meta,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return out

    @classmethod
    def load(cls, path: str | Path) -> TeacherSet:
        path = Path(path)
        manifest_file = path / "manifest.json"
        if not manifest_file.is_file():
            raise UsageError(f"{path} is not a teacher set (no manifest.json); create one with `vl2v embed`")
        manifest = json.loads(manifest_file.read_text())
        if manifest.get("format") != FORMAT:
            raise UsageError(f"{manifest_file}: unsupported format {manifest.get('format')!r}, expected {FORMAT}")
        shards = [np.load(path / name, mmap_mode="r") for name in manifest["shards"]]
        images = {
            e["path"]: np.array(shards[e["shard"]][e["row"], : e["views"]])
            for e in json.loads((path / "index.json").read_text())
        }
        meta = {
            k: v for k, v in manifest.items() if k not in {"format", "classes", "prompts", "dim", "n_images", "shards"}
        }
        return cls(
            classes=list(manifest["classes"]),
            prompts=[list(p) for p in manifest["prompts"]],
            text_embeddings=np.load(path / "texts.npy"),
            image_embeddings=images,
            meta=meta,
        )
