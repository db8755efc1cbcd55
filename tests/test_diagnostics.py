"""Premise diagnostics on known inputs: the variance decomposition, the teacher's zero-shot per domain,
and the whole set on the tiny world (a frozen-feature probe per target, parameter counts)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from distill_world import make_images, make_student, make_teacher_set

from client_distill.buy.teacher_set import TeacherSet
from client_distill.data.datasets import open_dataset
from client_distill.report.diagnostics import diagnose, prototype_accuracy, teacher_zero_shot, variance_shares

torch.set_num_threads(1)


def test_variance_shares_on_a_known_design():
    # 2 classes x 2 styles, 25 rows each: class moves x by ±2, style moves y by ±1, no noise
    classes = np.repeat([0, 1, 0, 1], 25)
    styles = np.repeat([0, 0, 1, 1], 25)
    x = np.stack([np.where(classes == 1, 2.0, -2.0), np.where(styles == 1, 1.0, -1.0)], axis=1)
    shares = variance_shares(x, classes, styles)
    assert shares == pytest.approx({"class": 0.8, "style": 0.2, "residual": 0.0}, abs=1e-9)
    noisy = x + np.random.default_rng(0).normal(size=x.shape)  # noise lands in the residual
    assert variance_shares(noisy, classes, styles)["residual"] > 0.1


def test_prototypes_text_against_source_image_means_on_a_known_design(tmp_path):
    """Table A's E1 and E3: in the source domains each class carries a style-bound extra direction (cat:
    e2, dog: e3) that the target domain swaps, so the source-image class means point the target's
    images to the wrong class while the text prototypes (e0, e1) still point them right."""
    data = make_images(tmp_path / "data")
    ds = open_dataset(data)
    e = np.eye(4, dtype=np.float32)
    extra = {("sketch", 0): e[3], ("sketch", 1): e[2], ("source", 0): e[2], ("source", 1): e[3]}
    images = {}
    for d in ds.domains:
        for smp in ds.samples(d):
            v = e[smp.label] + 2 * extra[("sketch" if d == "sketch" else "source", smp.label)]
            images[smp.path] = (v / np.linalg.norm(v))[None].astype(np.float16)
    teacher = TeacherSet(
        classes=ds.classes, prompts=[[f"a photo of a {c}"] for c in ds.classes], text_embeddings=e[:2],
        image_embeddings=images, meta={},
    )  # fmt: skip
    got = prototype_accuracy(teacher, ds, ["sketch", "photo"], seed=0)
    assert got["sketch"] == {"e1": 1.0, "e3": 0.0}
    assert got["photo"] == {"e1": 1.0, "e3": 1.0}  # where the sources agree with the target, both work
    del images[ds.samples("art")[0].path], images[ds.samples("photo")[0].path]  # a partial set still has means
    assert prototype_accuracy(teacher, ds, ["sketch"], seed=0)["sketch"]["e3"] == 0.0


def test_a_distractor_class_picked_in_the_open_set_counts_as_wrong(tmp_path):
    """The open-set zero-shot (open_vocab_eval's): classes the dataset lacks join the candidates."""
    data = make_images(tmp_path / "data")
    ds = open_dataset(data)
    e = np.eye(4, dtype=np.float32)
    images = {}
    for i, smp in enumerate(s for d in ds.domains for s in ds.samples(d)):
        v = e[smp.label] + (2 * e[3] if i == 0 else 0.2 * e[3])  # the first image sits nearer the distractor
        images[smp.path] = (v / np.linalg.norm(v))[None].astype(np.float16)
    teacher = TeacherSet(
        classes=ds.classes, prompts=[[c] for c in ds.classes], text_embeddings=e[:2], image_embeddings=images, meta={}
    )
    first = ds.domains[0]
    assert teacher_zero_shot(teacher, ds) == {d: 1.0 for d in ds.domains}
    open_set = teacher_zero_shot(teacher, ds, distractors=e[3:])
    assert open_set[first] == 1 - 1 / len(ds.samples(first)) and all(open_set[d] == 1.0 for d in ds.domains[1:])


def test_teacher_zero_shot_and_the_whole_diagnosis(tmp_path):
    data = make_images(tmp_path / "data")
    teacher = make_teacher_set(
        data,
        tmp_path / "teacher",
        meta={"model": "t", "model_revision": "r", "logit_scale": 30.0, "model_card": {"image_params": 123}},
    )
    ds = open_dataset(data)
    zs = teacher_zero_shot(teacher, ds)
    assert set(zs) == set(ds.domains) and all(v >= 0.8 for v in zs.values())  # image vectors sit near their class text
    make_student(tmp_path / "student.pt")
    d = diagnose(str(data), None, str(tmp_path / "student.pt"), str(tmp_path / "teacher"), ["sketch"])
    assert set(d["frozen_probe_ood"]) == {"sketch"} and 0 <= d["frozen_probe_ood"]["sketch"] <= 1
    assert d["student_params"] > 0 and d["teacher_image_params"] == 123 and d["teacher_logit_scale"] == 30.0
    assert set(d["teacher_prototypes"]) == {"sketch"} and set(d["teacher_prototypes"]["sketch"]) == {"e1", "e3"}
    assert sum(d["teacher_embedding_variance"].values()) == pytest.approx(1.0) and d["teacher_images"] == sum(
        len(ds.samples(x)) for x in ds.domains
    )


def test_a_report_without_zero_shot_runs_names_no_teacher():
    """A sweep of one method (the acquisition comparison, say) has no zero-shot run: the diagnostics say so
    instead of naming a teacher "None, revision None"."""
    from client_distill.report.report import Result, diagnostics_table

    run = Result("synth-pacs", "adip", "cached", 0.1, "sketch", 0, 0.9, 0.95, "swad", 168, 0, {}, {})
    rows = diagnostics_table([run], ["sketch"], {"student": "vl2v-photo-half"})
    (line,) = [r for r in rows if "zero-shot per domain" in r]
    assert line == "| teacher zero-shot per domain, every image | – (no `zero_shot` run among these runs) |"
    assert "None" not in "\n".join(rows)
