"""The in-domain convergence check of the report (client_distill/report/convergence.py)."""

from __future__ import annotations

import pytest

from client_distill.report.convergence import best_reached, collapsed, last_quarter_rise, never_learnt, section


def curve(values: list[float], stage: int = 0, every: int = 10) -> list[dict]:
    return [
        {"model": "checkpoint", "step": every * (i + 1), "stage_index": stage, "stage_step": every * (i + 1),
         "source_val_acc": v}
        for i, v in enumerate(values)
    ]  # fmt: skip


def test_a_curve_still_rising_over_its_last_quarter_is_measured_as_rising() -> None:
    # 0.50 .. 0.89 in steps of 0.01 (40 checkpoints, 10 steps apart): the last quarter (steps 300..400)
    # rises 0.01 per checkpoint over 100 steps, i.e. 10 points
    rise = last_quarter_rise(curve([0.5 + 0.01 * i for i in range(40)]))
    assert rise == pytest.approx(10.0, abs=1e-6)


def test_a_noisy_plateau_is_flat_though_its_last_checkpoint_is_its_lowest() -> None:
    plateau = [0.9, 0.91, 0.89, 0.91, 0.9, 0.91, 0.89, 0.9, 0.91, 0.885]
    rise = last_quarter_rise(curve([0.3, 0.6, 0.8, *plateau * 3]))
    assert rise is not None and abs(rise) <= 1.0


def test_a_two_stage_run_is_judged_on_its_last_stage_and_a_short_run_on_nothing() -> None:
    first = curve([0.2, 0.4, 0.6, 0.8], stage=0)
    second = curve([0.9] * 8, stage=1)
    assert last_quarter_rise(first + second) == pytest.approx(0.0, abs=1e-9)
    assert last_quarter_rise(curve([0.5])) is None
    assert last_quarter_rise([{"model": "swad", "source_val_acc": 0.9}]) is None


def test_the_section_counts_runs_that_stopped_rising_per_method() -> None:
    text = "\n".join(section({"erm": [0.4, -5.2, 3.0], "kd": [None]}, {"kd": ["kd @ 0% on photo seed 2 (collapsed)"]}))
    assert "| erm | 3 | -0.6 | +3.0 | 2 of 3 | 0 |" in text  # a fall is not learning: converged
    assert "| kd | 1 | – | – | – | 1 |" in text and "Failed: kd @ 0% on photo seed 2 (collapsed)." in text


def test_a_run_whose_second_stage_diverged_to_chance_is_collapsed_though_its_curve_is_flat() -> None:
    # an LP-FT of the protocol: the probe reached 0.91, fine-tuning at too high a rate fell to chance at once
    records = curve([0.65, 0.84, 0.9, 0.91], stage=0) + curve([0.18, 0.11, 0.11, 0.11, 0.11], stage=1)
    output = {"model": "swad", "source_val_acc": 0.112}
    assert collapsed(records, output) and last_quarter_rise(records) == pytest.approx(0.0, abs=1e-6)
    assert not collapsed(records, {"model": "swad", "source_val_acc": 0.89})
    assert not collapsed([], output)


def test_a_run_flat_at_chance_from_its_first_checkpoint_never_learnt_though_it_neither_rose_nor_fell() -> None:
    # a KD of the protocol at too high a rate: 13-15 % (chance on 7 classes) at every checkpoint
    records = curve([0.15, 0.13, 0.14, 0.15, 0.13, 0.15, 0.14, 0.15])
    output = {"model": "swad", "source_val_acc": 0.148}
    assert last_quarter_rise(records) is not None and abs(last_quarter_rise(records)) <= 1.0  # "converged"
    assert not collapsed(records, output)
    assert best_reached(records) == 0.15 and never_learnt(best_reached(records), task_best=0.99)
    assert not never_learnt(0.93, task_best=0.99) and not never_learnt(None, task_best=0.99)


def test_the_report_names_each_failed_run_and_how_it_failed() -> None:
    from dataclasses import replace

    from client_distill.report.report import Result, failures

    base = Result("synth-pacs", "kd", "cached", 0.1, "cartoon", 0, 0.95, 0.97, "swad", 168, 0, {}, {}, reached=0.99)
    runs = [
        base,
        replace(base, seed=2, ood=0.14, id=0.15, reached=0.15),  # flat at chance throughout
        replace(base, method="lp_ft", budget=None, test_domain="photo", seed=2, reached=0.91, collapsed=True),
    ]
    assert failures(runs, ["kd", "lp_ft"]) == {
        "kd": ["kd @ 10% on cartoon seed 2 (never learnt: best source validation 15 %)"],
        "lp_ft": ["lp_ft on photo seed 2 (collapsed)"],
    }
