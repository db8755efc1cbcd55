"""The folder of one distillation run: what it holds and how a killed run picks up where it was.

Files::

    args.json        the RunSpec (a folder holds one run: other args are refused)
    results.jsonl    one record per evaluation (see client_distill.train.model_selection)
    checkpoint.pt    the last checkpoint: position, model, optimizer, SWAD state; removed once the run
                     is done (a finished run never resumes, and SWAD's pending copies make it ~10× the
                     model: 48 MB of the default student's 53 MB folder)
    best_<stage>.pt  the stage's best checkpoint by source validation (model weights)
    swad.pt          SWAD's average (model weights), when the run used SWAD
    done             written last: the run is finished

Writes are atomic (temporary file, then rename). A best file found in a segment is first written as
``NAME.new`` and becomes ``NAME`` only after the checkpoint that lists it as *pending* is saved: a
crash in between cannot leave a best file from steps that the resumed run recomputes (and might score
differently). Resuming promotes what the checkpoint lists, drops any other ``.new`` file, and cuts
``results.jsonl`` back to the checkpoint's position.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from client_distill.errors import UsageError
from client_distill.train.run_reader import ARGS_FILE, DONE_FILE, RESULTS_FILE, RunReader

CHECKPOINT = "checkpoint.pt"
SWAD_WEIGHTS = "swad.pt"


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


class RunFolder(RunReader):
    """The files of one run (see the module docstring), read as any reader reads them."""

    def __init__(self, path: str | Path, rank: int = 0):
        super().__init__(path)
        self.writer = rank == 0  # under torchrun only rank 0 writes

    # ------------------------------------------------------------------------------ identity, end

    def claim(self, args: dict[str, Any]) -> None:
        """Make the folder this run's: refuse one that holds another run's ``args.json``."""
        file = self.path / ARGS_FILE
        if file.is_file() and json.loads(file.read_text()) != args:
            raise UsageError(f"{self.path} holds a different run (args.json differs); use another --out")
        if self.writer:
            self.path.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(args, indent=2))

    def mark_done(self) -> None:
        """Write ``done``, then drop the checkpoint that only a resume would read."""
        if self.writer:
            (self.path / DONE_FILE).write_text("done\n")
            (self.path / CHECKPOINT).unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------- records

    def append(self, record: dict[str, Any]) -> None:
        if self.writer:
            with open(self.path / RESULTS_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------------ weights, checkpoint

    def save(self, obj: Any, name: str) -> None:
        if self.writer:
            save_atomic(obj, self.path / name)

    def load(self, name: str, device: torch.device | str = "cpu") -> Any:
        return torch.load(self.path / name, map_location=device, weights_only=True)

    def save_checkpoint(self, state: dict[str, Any], pending: Iterable[str]) -> None:
        """Save ``state`` (its ``position`` lists ``pending``), then promote the pending best files."""
        if not self.writer:
            return
        save_atomic(state, self.path / CHECKPOINT)
        self._promote(pending)

    def resume(self) -> dict[str, Any] | None:
        """The saved checkpoint (None for a fresh start), with the folder made consistent with it:
        pending best files promoted, stray ``.new`` files dropped, records after it removed."""
        file = self.path / CHECKPOINT
        state = torch.load(file, map_location="cpu", weights_only=False) if file.is_file() else None
        pending = state["position"]["pending"] if state else []
        self._promote([name for name in pending if (self.path / (name + ".new")).is_file()])
        for stale in self.path.glob("*.new"):
            stale.unlink()
        results = self.path / RESULTS_FILE
        if state is None:
            results.unlink(missing_ok=True)
            return None
        here = (state["position"]["stage_index"], state["position"]["stage_step"])
        kept = [r for r in self.records() if r["model"] == "checkpoint" and (r["stage_index"], r["stage_step"]) <= here]
        results.write_text("".join(json.dumps(r) + "\n" for r in kept))
        return state

    def _promote(self, names: Iterable[str]) -> None:
        for name in names:
            (self.path / (name + ".new")).replace(self.path / name)
