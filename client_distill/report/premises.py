"""The paper's regime as five measured premises, and the bands a world was pre-registered to meet.

VL2V-ADiP's claim is made in a regime: students start from generic features that fine-tuning improves a
lot (P1), ERM loses accuracy out of domain (P2), the teacher is strong but not an oracle (P3), and in
the teacher's space class text embeddings describe an unseen domain far better than the source images'
class means do (P4), at a level that is neither saturated nor broken (P5). A report that shows these
beside the methods says whether its comparison is made in that regime; ``docs/results/calibration.md``
pre-registered a band for each on the synthetic tasks (``report/premises.yaml``), and the paper's own
values are the reference for the real datasets.

Every premise is per target domain, then the mean over targets, in accuracy points. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

#: the pre-registered bands, by dataset name
BANDS_FILE = Path(__file__).parent / "premises.yaml"


@dataclass(frozen=True)
class Premise:
    key: str
    label: str
    #: from the per-target inputs (fractions) to the premise in points, or None when an input is missing
    measure: Callable[[Mapping[str, float | None]], float | None]


def _diff(a: str, b: str) -> Callable[[Mapping[str, float | None]], float | None]:
    return lambda x: None if x.get(a) is None or x.get(b) is None else 100 * (x[a] - x[b])


PREMISES: tuple[Premise, ...] = (
    Premise("probe_minus_erm", "P1 frozen-feature probe − ERM", _diff("probe", "erm_ood")),
    Premise("erm_id_minus_ood", "P2 ERM ID − OOD", _diff("erm_id", "erm_ood")),
    Premise("teacher_minus_erm", "P3 teacher zero-shot − ERM", _diff("teacher", "erm_ood")),
    Premise("e1_minus_e3", "P4 E1 text − E3 source-image prototypes", _diff("e1", "e3")),
    Premise("erm_ood", "P5 ERM OOD", lambda x: None if x.get("erm_ood") is None else 100 * x["erm_ood"]),
)

Band = tuple[float | None, float | None]


def load_bands(dataset: str, path: Path = BANDS_FILE) -> dict[str, Band] | None:
    """The pre-registered ``[low, high]`` band of each premise for ``dataset``, or None if it has none."""
    table = yaml.safe_load(path.read_text()) or {}
    bands = table.get(dataset)
    return None if bands is None else {k: (v[0], v[1]) for k, v in bands.items()}


def miss(value: float, band: Band) -> float:
    """How far ``value`` lies outside ``band``, in points (0 inside it)."""
    low, high = band
    return max(0.0, (low - value) if low is not None else 0.0, (value - high) if high is not None else 0.0)


def band_text(band: Band) -> str:
    low, high = band
    if low is None:
        return f"≤ {high:+g}"
    if high is None:
        return f"≥ {low:+g}"
    return f"{low:+g} to {high:+g}"


def measure(inputs: Mapping[str, Mapping[str, float | None]]) -> dict[str, dict[str, float | None]]:
    """Each premise per target and as ``"avg"`` (the mean over targets that have it; None if some lack
    it). ``inputs[target]`` holds fractions: probe, erm_ood, erm_id, teacher, e1, e3."""
    out = {}
    for p in PREMISES:
        per = {t: p.measure(x) for t, x in inputs.items()}
        values = list(per.values())
        per["avg"] = None if not values or any(v is None for v in values) else float(np.mean(values))
        out[p.key] = per
    return out


def table(
    targets: Sequence[str], measured: Mapping[str, Mapping[str, float | None]], bands: Mapping[str, Band] | None
) -> list[str]:
    """Markdown rows: each premise per target, its mean, the band and whether the mean is in it."""
    head = ["premise", *targets, "avg", "band (pre-registered)", "in band"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for p in PREMISES:
        row = measured[p.key]
        cells = [
            "–" if row.get(t) is None else f"{row[t]:+.1f}" if p.key != "erm_ood" else f"{row[t]:.1f}" for t in targets
        ]
        avg = row.get("avg")
        band = (bands or {}).get(p.key)
        if band is None:
            verdict, shown = "–", "none"
        elif avg is None:
            verdict, shown = "not measured", band_text(band)
        else:
            off = miss(avg, band)
            verdict, shown = ("yes" if off == 0 else f"no, by {off:.1f}"), band_text(band)
        avg_text = "–" if avg is None else f"{avg:+.1f}" if p.key != "erm_ood" else f"{avg:.1f}"
        lines.append("| " + " | ".join([p.label, *cells, f"**{avg_text}**", shown, verdict]) + " |")
    return lines
