"""One distillation run: its spec, hparams, student, the pairing of inputs with bought embeddings,
augmentation, SWAD, the run folder (written with torch, read without) and the run itself, plus the
student's own pretraining and linear probes. Builds on :mod:`client_distill.methods`,
:mod:`client_distill.buy` (teacher sets; an online run's vendor) and :mod:`client_distill.data`."""
