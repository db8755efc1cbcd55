"""The premises of a calibration attempt that need no training (docs/results/calibration.md): the
teacher's zero-shot (E1) and Table A's E3 per target, the student init's frozen-feature probe per target,
and the variance shares, from a teacher set holding every image of the task. Prints JSON.

    python calibration/quick_premises.py DATA DATASET STUDENT TEACHER_SET
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from client_distill.report.diagnostics import diagnose

if __name__ == "__main__":
    torch.set_num_threads(1)
    data, dataset, student, teacher = sys.argv[1:5]
    from client_distill.data.datasets import open_dataset

    targets = list(open_dataset(data, dataset).domains)
    d = diagnose(data, dataset, student, teacher, targets)
    protos = d["teacher_prototypes"]
    summary = {
        "zero_shot_e1": {t: round(100 * protos[t]["e1"], 1) for t in targets},
        "e3": {t: round(100 * protos[t]["e3"], 1) for t in targets},
        "e1_minus_e3_avg": round(100 * float(np.mean([protos[t]["e1"] - protos[t]["e3"] for t in targets])), 1),
        "probe": {t: round(100 * d["frozen_probe_ood"][t], 1) for t in targets},
        "probe_avg": round(100 * float(np.mean(list(d["frozen_probe_ood"].values()))), 1),
        "teacher_variance": {k: round(v, 3) for k, v in d["teacher_embedding_variance"].items()},
        "student_variance": {k: round(v, 3) for k, v in d["student_feature_variance"].items()},
    }
    print(json.dumps(summary, indent=1))
