"""A run folder, read without torch: what the run is (``args.json``), what it recorded
(``results.jsonl``, see :mod:`~client_distill.train.model_selection`), whether it finished (``done``) and
the model it outputs. Everything that only reads runs reads them here: the export and its model card,
open-vocabulary exports, ``vl2v predict``/``evaluate`` on a run folder, the report and the sweep.
Writing a run folder (checkpoints, resuming) is :class:`~client_distill.train.run_folder.RunFolder`'s,
which reads through this class too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from client_distill.errors import UsageError
from client_distill.train.model_selection import select
from client_distill.train.runspec import RunSpec

ARGS_FILE = "args.json"
RESULTS_FILE = "results.jsonl"
DONE_FILE = "done"


def load_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/results.jsonl`` (empty if there is none yet)."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_search_candidate(args: dict[str, Any]) -> bool:
    """Whether a run (its args) is a candidate of a sweep's hparam search rather than a protocol run."""
    return (args.get("search") or {}).get("candidate") is not None


class RunReader:
    """The files of the run folder ``path``, read on demand."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def is_run(self) -> bool:
        """Whether the folder holds a run (its ``args.json``)."""
        return (self.path / ARGS_FILE).is_file()

    @property
    def done(self) -> bool:
        return (self.path / DONE_FILE).is_file()

    def args(self) -> dict[str, Any]:
        """``args.json`` as the run wrote it (its :class:`RunSpec` as a dict); a one-line
        :class:`UsageError` where the folder holds none, or one that is not readable."""
        file = self.path / ARGS_FILE
        if not file.is_file():
            raise UsageError(f"{self.path} is not a run folder (no {ARGS_FILE})")
        try:
            args = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"{self.path} is not a run folder (its {ARGS_FILE} is not readable: {exc})") from None
        if not isinstance(args, dict):
            raise UsageError(f"{self.path} is not a run folder (its {ARGS_FILE} is not a JSON object)")
        return args

    def spec(self) -> RunSpec:
        """The run's :class:`RunSpec`."""
        try:
            return RunSpec(**self.args())
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{self.path / ARGS_FILE} is not a run's {ARGS_FILE} ({exc})") from None

    def records(self) -> list[dict[str, Any]]:
        return load_records(self.path)

    def output_record(self) -> dict[str, Any]:
        """The record of the model the run outputs (:func:`~client_distill.train.model_selection.select`)."""
        return select(self.records())

    def finished(self) -> RunReader:
        """This reader, once the folder is known to hold a finished run (else a one-line error)."""
        self.args()
        if not self.done:
            raise UsageError(
                f"{self.path}: the run has not finished (no '{DONE_FILE}' file); finish it with the same command"
            )
        return self
