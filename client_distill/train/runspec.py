"""What defines one distillation run, without torch: the :class:`RunSpec` and the teacher modes. The
``vl2v`` command line builds its parser from these on every call, ``--help`` included, so importing them
must not import torch; :mod:`client_distill.train.run` runs a spec, :mod:`client_distill.methods`
implements the methods (whose names the command line reads from :mod:`client_distill.methods.catalog`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TEACHER_MODES = ("cached", "online")


@dataclass
class RunSpec:
    """Everything that defines a run; its JSON is hashed into the sweep's run-folder name."""

    method: str
    data: str
    test_domain: str
    seed: int = 0
    dataset: str | None = None
    teacher: str | None = None  # teacher-set folder
    student: str = "vl2v-photo-half"  # the frozen world's student (docs/results/calibration.md)
    pretrained: bool = True
    profile: str = "paper"
    hparams: dict[str, Any] = field(default_factory=dict)  # overrides of the registry's values
    budget: float | None = None  # fraction of source images whose bought embeddings are used
    teacher_mode: str = "cached"
    #: the hparam search that chose ``hparams`` (grid, criterion, scores of every candidate), kept with the run
    search: dict[str, Any] | None = None
    #: views bought per image for this point when more than the sweep's usual (a label of the budget axis: the
    #: teacher set itself holds the views); None: the set's own
    views: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-able values; ``views`` only where set, so that runs named before it existed keep
        their folders."""
        out = asdict(self)
        if out["views"] is None:
            del out["views"]
        return out
