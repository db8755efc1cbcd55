"""SWAD's loss-valley window on known loss curves, the average it returns, and its resumable state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from client_distill.train.swad import LossValley, Segment, SegmentAverage


def segment(i: int, loss: float) -> Segment:
    """Segment ``i`` covers steps 10i+1..10i+10 and its weights are all ``i``."""
    return Segment(10 * i + 1, 10 * i + 10, loss, {"w": torch.full((2,), float(i))})


def feed(losses: list[float], **kw) -> LossValley:
    valley = LossValley(**kw)
    for i, loss in enumerate(losses):
        valley.add(segment(i, loss))
    return valley


def test_window_starts_where_the_loss_stops_falling_and_ends_when_it_stays_high():
    # falls until segment 3, flat, then rises above (1 + 0.3) × mean(segments 3..5) for good from segment 9
    losses = [2.0, 1.5, 1.2, 1.0, 1.05, 1.1, 1.2, 1.25, 1.2, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6]
    valley = feed(losses)
    weights = valley.final_weights()
    threshold = 1.3 * (1.0 + 1.05 + 1.1) / 3
    assert valley.threshold == pytest.approx(threshold) and valley.dead
    assert valley.window == [(10 * i + 1, 10 * i + 10) for i in range(3, 9)]  # segments 3..8
    assert torch.allclose(weights["w"], torch.full((2,), sum(range(3, 9)) / 6))  # the uniform average of the window
    assert valley.summary() == {
        "converged": True,
        "dead": True,
        "threshold": pytest.approx(threshold),
        "start_step": 31,
        "end_step": 90,
        "segments": 6,
    }


def test_undecided_segments_at_the_end_are_kept_while_a_later_loss_is_under_the_tolerance():
    valley = feed(
        [2.0, 1.0, 1.1, 1.2, 1.25, 1.9, 1.3]
    )  # converged at segment 1 (threshold 1.43); only 6 segments after
    valley.final_weights()
    assert not valley.dead and [w[0] for w in valley.window] == [
        11,
        21,
        31,
        41,
        51,
        61,
    ]  # 1.9 is kept: 1.3 after it is under


def test_a_loss_that_never_stops_falling_gives_the_last_segment():
    valley = feed([5.0, 4.0, 3.0, 2.0, 1.0])
    assert not valley.converged
    assert torch.equal(valley.final_weights()["w"], torch.full((2,), 4.0)) and valley.window == [(41, 50)]
    with pytest.raises(ValueError):
        LossValley().final_weights()


def test_state_round_trip_gives_the_same_window():
    losses = [2.0, 1.5, 1.2, 1.0, 1.05, 1.1, 1.2, 1.25, 1.2, 2.0, 2.1]
    straight = feed(losses)
    first = feed(losses[:5])
    resumed = LossValley()
    resumed.load_state_dict(first.state_dict())
    for i, loss in enumerate(losses[5:], start=5):
        resumed.add(segment(i, loss))
    assert (
        torch.equal(resumed.final_weights()["w"], straight.final_weights()["w"]) and resumed.window == straight.window
    )


def test_segment_average_is_the_mean_of_the_steps_it_saw():
    model = nn.Linear(2, 1, bias=False)
    average = SegmentAverage(model)
    for step, value in enumerate([1.0, 2.0, 6.0], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update(step)
    seg = average.close(3, 0.5)
    assert (seg.start, seg.end, seg.loss) == (1, 3, 0.5) and torch.allclose(
        seg.weights["weight"], torch.full((1, 2), 3.0)
    )
    with torch.no_grad():
        model.weight.fill_(10.0)
    average.update(4)
    assert average.close(4, 0.1).weights["weight"].eq(10.0).all()  # a new segment starts after close


def test_the_foreach_average_equals_torchs_per_tensor_update_bit_for_bit():
    """running_mean replaces AveragedModel's per-tensor loop: a run's SWAD model must not change by a
    bit, BatchNorm's integer step count included."""
    from torch.optim.swa_utils import AveragedModel

    from client_distill.train.swad import running_mean

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    theirs, ours = (AveragedModel(model, multi_avg_fn=fn, use_buffers=True) for fn in (None, running_mean))
    for _ in range(7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.rand(2, 3, 8, 8))  # moves BatchNorm's running statistics and step count
        theirs.update_parameters(model)
        ours.update_parameters(model)
    a, b = theirs.module.state_dict(), ours.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert b["1.num_batches_tracked"].dtype == torch.long
