"""The paper's regime as premises: measured per target and averaged, against the pre-registered bands."""

from __future__ import annotations

import pytest

from client_distill.report import premises


def test_measure_per_target_and_mean():
    inputs = {
        "sketch": {"probe": 0.60, "erm_ood": 0.80, "erm_id": 0.95, "teacher": 0.97, "e1": 0.97, "e3": 0.85},
        "photo": {"probe": 0.90, "erm_ood": 0.90, "erm_id": 0.96, "teacher": 0.95, "e1": 0.95, "e3": 0.93},
    }
    got = premises.measure(inputs)
    assert got["probe_minus_erm"] == pytest.approx({"sketch": -20.0, "photo": 0.0, "avg": -10.0})
    assert got["erm_id_minus_ood"]["avg"] == pytest.approx(10.5)
    assert got["teacher_minus_erm"]["avg"] == pytest.approx(11.0)
    assert got["e1_minus_e3"] == pytest.approx({"sketch": 12.0, "photo": 2.0, "avg": 7.0})
    assert got["erm_ood"]["avg"] == pytest.approx(85.0)
    inputs["photo"]["e3"] = None  # one target without it: no mean, rather than a mean of the others
    assert premises.measure(inputs)["e1_minus_e3"]["avg"] is None


def test_bands_are_the_pre_registered_ones_and_misses_are_distances():
    pacs = premises.load_bands("synth-pacs")
    assert pacs == {
        "probe_minus_erm": (None, -12),
        "erm_id_minus_ood": (6, None),
        "teacher_minus_erm": (3, 10),
        "e1_minus_e3": (8, None),
        "erm_ood": (80, 92),
    }
    assert set(premises.load_bands("synth-officehome")) == set(pacs)
    assert premises.load_bands("pacs-not-registered") is None
    assert premises.miss(-10.0, (None, -12)) == pytest.approx(2.0)
    assert premises.miss(-15.0, (None, -12)) == 0.0
    assert premises.miss(95.0, (80, 92)) == pytest.approx(3.0) and premises.miss(75.0, (80, 92)) == pytest.approx(5.0)


def test_table_says_which_premise_is_in_its_band():
    inputs = {"sketch": {"probe": 0.60, "erm_ood": 0.85, "erm_id": 0.95, "teacher": 0.97, "e1": 0.97, "e3": 0.95}}
    rows = premises.table(["sketch"], premises.measure(inputs), premises.load_bands("synth-pacs"))
    by_key = dict(zip([p.key for p in premises.PREMISES], rows[2:], strict=True))
    assert by_key["probe_minus_erm"].endswith("| ≤ -12 | yes |")
    assert "**+2.0**" in by_key["e1_minus_e3"] and by_key["e1_minus_e3"].endswith("| ≥ +8 | no, by 6.0 |")
    assert by_key["erm_ood"].endswith("| +80 to +92 | yes |")
    unbanded = premises.table(["sketch"], premises.measure(inputs), None)
    assert all(r.endswith("| none | – |") for r in unbanded[2:])
