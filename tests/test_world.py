"""The synthetic world: counts, determinism, variation, captions, sizes, tasks and the DomainBed writer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from client_distill.cli import main
from shared.world import CLASS_NAMES, CLIENT_STYLES, STYLE_NAMES, TASKS, caption, render
from shared.world.captions import CLASS_SYNONYMS, STYLE_PHRASES
from shared.world.streams import Stream, stream_rng

PACS_STYLES = ("art_painting", "cartoon", "photo", "sketch")


def _bytes(img) -> bytes:
    return np.asarray(img).tobytes()


def test_counts_and_vendor_only_styles():
    assert len(CLASS_NAMES) >= 48 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert len(STYLE_NAMES) >= 8 and set(PACS_STYLES) <= set(STYLE_NAMES)
    assert len(set(STYLE_NAMES) - set(CLIENT_STYLES)) >= 4
    for required in ("house", "tree", "fish", "car", "cup", "key", "umbrella", "flower", "boat", "bird"):
        assert required in CLASS_NAMES


@pytest.mark.parametrize("style", STYLE_NAMES)
def test_render_is_deterministic_and_varies(style):
    a, attrs_a = render("fish", style, np.random.default_rng(7))
    b, attrs_b = render("fish", style, np.random.default_rng(7))
    c, _ = render("fish", style, np.random.default_rng(8))
    assert a.mode == "RGB" and a.size == (64, 64)
    assert _bytes(a) == _bytes(b) and attrs_a == attrs_b
    assert _bytes(a) != _bytes(c)
    assert np.asarray(a).std() > 5  # not a blank image


def test_every_class_renders_with_intra_class_variation():
    from shared.world.classes import draw

    for name in CLASS_NAMES:
        img, _ = render(name, "cartoon", np.random.default_rng(1), size=32)
        assert img.size == (32, 32)
        one, two = draw(name, np.random.default_rng(1)), draw(name, np.random.default_rng(2))
        # a family, not a glyph: two members differ in their geometry
        shapes_differ = len(one) != len(two) or any(
            p.points.shape != q.points.shape or not np.allclose(p.points, q.points)
            for p, q in zip(one, two, strict=True)
        )
        assert shapes_differ, name


def test_any_size():
    for size in (32, 64, 224):
        img, _ = render("house", "photo", np.random.default_rng(0), size=size)
        assert img.size == (size, size)


def test_unknown_names_are_errors():
    with pytest.raises(ValueError):
        render("unicorn", "photo", np.random.default_rng(0))
    with pytest.raises(ValueError):
        render("fish", "watercolour", np.random.default_rng(0))


def test_captions_name_class_style_and_visible_attributes():
    rng = np.random.default_rng(0)
    for style in STYLE_NAMES:
        texts = []
        for i in range(40):
            _, attrs = render("fish", style, np.random.default_rng(i), size=16)
            text = caption("fish", style, attrs, rng)
            assert "fish" in text  # "fish" or its synonym "goldfish"
            texts.append((text, attrs))
        phrases = STYLE_PHRASES[style]
        assert any(any(p in t for p in phrases) for t, _ in texts)
        mentions_colour = [attrs["colour"] in t.split() for t, attrs in texts]
        if style in ("sketch", "blueprint"):
            assert not any(mentions_colour)  # no colour is visible in line drawings
        else:
            assert any(mentions_colour)
    assert len({t for t, _ in texts}) > 10  # varied templates


def test_captions_use_class_synonyms_but_mostly_the_class_name():
    rng = np.random.default_rng(0)
    _, attrs = render("car", "photo", np.random.default_rng(0), size=16)
    texts = [caption("car", "photo", attrs, rng) for _ in range(400)]
    with_synonym = sum(any(s in t for s in CLASS_SYNONYMS["car"]) for t in texts)
    assert 40 < with_synonym < 160  # about 1 in 4
    assert all(CLASS_SYNONYMS[c] and c not in CLASS_SYNONYMS[c] for c in CLASS_SYNONYMS)
    assert set(CLASS_SYNONYMS) <= set(CLASS_NAMES)


def test_tasks_match_the_issue():
    pacs, office = TASKS["synth-pacs"], TASKS["synth-officehome"]
    assert pacs.domains == PACS_STYLES and len(pacs.classes) == 7
    assert len(office.classes) >= 24 and len(office.domains) == 4
    assert set(office.domains) - set(pacs.domains)
    for task in (pacs, office):
        assert set(task.classes) <= set(CLASS_NAMES) and set(task.domains) <= set(CLIENT_STYLES)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))}


def test_cli_writes_domainbed_layout_identically_and_refuses_to_overwrite(tmp_path, capsys):
    args = ["data", "synth", "--task", "synth-officehome", "--per-class", "1", "--size", "24"]
    assert main([*args, "--out", str(tmp_path / "a"), "--seed", "5"]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--seed", "5", "--workers", "1"]) == 0
    a = _digest(tmp_path / "a")
    task = TASKS["synth-officehome"]
    assert len(a) == len(task.domains) * len(task.classes)
    assert {p.split("/")[0] for p in a} == set(task.domains)
    assert "product/light_bulb/0.png" in a  # spaces become underscores
    assert a == _digest(tmp_path / "b")  # same seed, byte-identical whatever the worker count

    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "a"), "--seed", "6"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert _digest(tmp_path / "a") == a  # untouched
    assert main([*args, "--out", str(tmp_path / "a"), "--seed", "6", "--overwrite"]) == 0
    changed = _digest(tmp_path / "a")
    assert changed.keys() == a.keys() and changed != a


def _images(stream, words_of, seeds, style: str, class_name: str, count: int) -> set[bytes]:
    """The first ``count`` images of a (style, class) cell of ``stream`` for each seed, as pixel bytes."""
    return {
        np.asarray(
            render(class_name, style, stream_rng(stream, *words_of(seed, style, class_name, n)), 32)[0]
        ).tobytes()
        for seed in seeds
        for n in range(count)
    }


def _world_words(seed: int, style: str, class_name: str, n: int) -> list[int]:
    return [seed, STYLE_NAMES.index(style), CLASS_NAMES.index(class_name), n]


@pytest.mark.parametrize(("style", "class_name"), [("sketch", "dog"), ("photo", "house"), ("product", "cup")])
def test_client_tasks_are_disjoint_from_the_vendor_and_student_corpora(style, class_name):
    """No client image, whatever its data seed, is an image the vendor's or the student's corpus was (or
    could be) rendered from: corpus seeds 0-3 (the vendor's committed model used 0-2) against client
    seeds 0-3, the calibration seed 101 and a large one, over the first images of three cells."""
    from client_distill.train.pretrain_student import corpus_words

    client = _images(Stream.CLIENT, _world_words, (0, 1, 2, 3, 101, 2**31 - 1), style, class_name, 4)
    vendor = _images(Stream.VENDOR, _world_words, range(4), style, class_name, 4)
    student = {
        part: _images(
            Stream.STUDENT, lambda s, st, c, n, p=part: corpus_words(s, p, st, c, n), range(4), style, class_name, 4
        )
        for part in (0, 1)  # its training pool and its test sets
    }
    assert len(client) == 24 and len(vendor) == 16 and all(len(v) == 16 for v in student.values())
    assert not client & vendor
    assert not client & (student[0] | student[1])
    # the check can fail: the same words in one stream are the same image, and a client image rendered
    # without its stream's tag would be the vendor's own
    assert _images(Stream.VENDOR, _world_words, (0,), style, class_name, 1) <= vendor
    untagged = {
        np.asarray(
            render(class_name, style, np.random.default_rng(_world_words(0, style, class_name, 0)), 32)[0]
        ).tobytes()
    }
    assert untagged <= vendor


def test_classes_come_with_their_typical_colour_and_habitat_mostly():
    """The source-domain shortcuts of real data: an elephant is grey in the savanna three times in four."""
    from shared.world.context import TYPICAL

    attrs = [render("elephant", "photo", np.random.default_rng(k), size=16)[1] for k in range(200)]
    grey = np.mean([a["colour"] == "grey" for a in attrs])
    savanna = np.mean([a["habitat"] == "savanna" for a in attrs])
    assert TYPICAL - 0.1 < grey < TYPICAL + 0.15 and TYPICAL - 0.1 < savanna < TYPICAL + 0.15
    rng = np.random.default_rng(0)
    a = {**attrs[0], "habitat": "savanna"}
    said = {caption("elephant", "sketch", a, rng) for _ in range(200)} | {
        caption("elephant", "product", a, rng) for _ in range(200)
    }
    assert not any("savanna" in c or "dry grass" in c for c in said)  # no backdrop drawn, none named
    assert any("savanna" in caption("elephant", "photo", a, rng) for _ in range(200))


def test_each_medium_draws_a_class_with_another_class_look():
    """Class-dependent domain shift: outside photos a class usually wears the look of another class, the
    same one in every image of that style, so source-style class means point elsewhere in a new style."""
    from shared.world.context import TYPICAL, TYPICAL_LOOK, convention

    assert all(convention("photo")[name] == name for name in TYPICAL_LOOK)
    for style in ("art_painting", "cartoon", "product"):
        borrowed = convention(style)
        assert sorted(borrowed.values()) == sorted(TYPICAL_LOOK)  # a permutation of the looks ...
        assert not any(borrowed[name] == name for name in TYPICAL_LOOK)  # ... that moves every class
    lender = convention("cartoon")["elephant"]
    palette, habitat = TYPICAL_LOOK[lender]
    attrs = [render("elephant", "cartoon", np.random.default_rng(k), size=16)[1] for k in range(200)]
    assert np.mean([a["habitat"] == habitat for a in attrs]) > TYPICAL - 0.1
    assert np.mean([a["colour"] in palette for a in attrs]) > TYPICAL - 0.1
    assert convention("cartoon") != convention("art_painting")


def test_a_context_rich_corpus_names_colour_and_habitat_in_every_caption_that_can_show_them():
    """The teacher-corpus knob of the calibration (vl2v-vendor pretrain --context-said): with 1 every
    photo caption names the colour and the habitat, with 0 none does, and the random draws are the same."""
    attrs = render("elephant", "photo", np.random.default_rng(3), size=16)[1]
    always = [caption("elephant", "photo", attrs, np.random.default_rng(k), context=1.0) for k in range(50)]
    never = [caption("elephant", "photo", attrs, np.random.default_rng(k), context=0.0) for k in range(50)]
    usual = [caption("elephant", "photo", attrs, np.random.default_rng(k)) for k in range(50)]
    from shared.world.context import HABITATS

    habitat_words = HABITATS[attrs["habitat"]].phrases
    assert all(attrs["colour"] in c and any(h in c for h in habitat_words) for c in always)
    assert not any(any(h in c for h in habitat_words) for c in never)
    assert 0 < sum(any(h in c for h in habitat_words) for c in usual) < 50
