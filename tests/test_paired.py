"""Paired differences over (target, seed) cells: mean, standard error, Student-t interval, verdict."""

from __future__ import annotations

import pytest

from client_distill.report.paired import PairedDifference, paired


def test_a_consistent_gain_holds_and_its_interval_is_students_t():
    a = {("sketch", s): 0.80 + 0.01 * s for s in range(5)}
    b = {("sketch", s): 0.70 + 0.01 * s + (0.01 if s % 2 else -0.01) for s in range(5)}
    d = paired("adip", a, "erm", b)
    assert d.n == 5 and d.mean == pytest.approx(10.2)  # differences 11, 9, 11, 9, 11 points
    assert d.se == pytest.approx(1.0954451 / 5**0.5, rel=1e-6)
    assert d.high - d.mean == pytest.approx(2.7764451 * d.se, rel=1e-6)  # t(0.975, 4)
    assert d.verdict == "holds" and d.row().endswith("| holds |")


def test_reversed_unresolved_and_no_direction():
    base = {("art", s): 0.9 for s in range(4)}
    worse = {("art", s): 0.8 + 0.01 * s for s in range(4)}
    assert paired("adip", worse, "kd", base).verdict == "reversed"
    noisy = {("art", s): 0.9 + (0.05 if s % 2 else -0.05) for s in range(4)}
    assert paired("adip", noisy, "kd", base).verdict == "unresolved"
    assert paired("cached", worse, "online", base, paper=0).verdict == "cached < online (no direction in the paper)"


def test_only_common_cells_count_and_one_cell_is_too_few():
    a = {("art", 0): 0.9, ("art", 1): 0.8, ("photo", 0): 0.7}
    b = {("art", 0): 0.85, ("photo", 1): 0.6}
    d = paired("a", a, "b", b)
    assert d.n == 1 and d.mean == pytest.approx(5.0) and d.verdict == "too few cells"
    two = paired("a", {("x", 0): 0.6, ("x", 1): 0.7}, "b", {("x", 0): 0.5, ("x", 1): 0.6})
    assert two.se == pytest.approx(0.0) and two.verdict == "too few cells"  # equal differences are not certainty


def test_an_interval_end_that_decides_the_verdict_never_prints_as_zero():
    d = PairedDifference("adip", "erm", 20, -0.7, 0.3, -1.33, -0.02)
    assert d.verdict == "reversed" and "| [-1.3, -0.02] | reversed |" in d.row()
    assert "[+0.0, +1.0]" in PairedDifference("a", "b", 5, 0.5, 0.2, 0.0, 1.04).row()  # an exact zero stays +0.0
    assert "[-0.3, +0.3]" in PairedDifference("a", "b", 5, 0.0, 0.1, -0.26, 0.26).row()
    assert PairedDifference("a", "b", 5, -0.5, 0.2, -1.0, -0.004).interval == "[-1.0, -0.004]"
    assert PairedDifference("a", "b", 5, -0.5, 0.2, -1.0, -0.00004).interval == "[-1.0, -4e-05]"
