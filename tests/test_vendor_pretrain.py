"""``vl2v-vendor pretrain``: a tiny run writes an fp16 open_clip-loadable checkpoint, pauses and resumes
to the same weights as an uninterrupted run, and refuses to mix runs with different settings."""

from __future__ import annotations

import open_clip
import pytest
import torch

from vendor_server.cli import main
from vendor_server.model_configs import register_model_configs
from vendor_server.pretrain import MODEL_NAME, PretrainConfig, pretrain

TINY = PretrainConfig(steps=4, batch_size=16, per_cell=1, warmup=1, checkpoint_every=2, workers=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small and bitwise repeatable on CPU
    yield
    torch.set_num_threads(threads)


def test_pause_resume_matches_straight_run_and_loads_in_open_clip(tmp_path, capsys):
    straight, sliced = tmp_path / "straight.pt", tmp_path / "sliced.pt"
    pretrain(straight, TINY, log=lambda _: None)

    paused = pretrain(sliced, TINY, stop_after=2, log=lambda _: None)
    assert paused["paused"] and not sliced.exists()
    assert (tmp_path / "sliced.pt.work" / "state.pt").is_file()
    # a rerun with other settings must not mix into the paused run
    capsys.readouterr()
    assert (
        main(["pretrain", "--out", str(sliced), "--steps", "5", "--batch-size", "16", "--per-cell", "1", "--no-eval"])
        == 2
    )
    assert "different settings" in capsys.readouterr().err
    messages: list[str] = []
    done = pretrain(sliced, TINY, log=messages.append)
    assert messages == ["resuming from step 2"] and done["steps"] == 2 and not done["paused"]
    assert not (tmp_path / "sliced.pt.work").exists()

    a, b = torch.load(straight, weights_only=True), torch.load(sliced, weights_only=True)
    assert a.keys() == b.keys()
    assert all(v.dtype == torch.float16 for v in a.values() if v.is_floating_point())
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3) for k in a)  # same batches, same weights

    register_model_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=str(straight))
    assert torch.allclose(model.state_dict()["text_projection"], a["text_projection"].float())
    tokens = open_clip.get_tokenizer(MODEL_NAME)(["a photo of a fish"])
    assert model.encode_text(tokens).shape == (1, model.text_projection.shape[1])
