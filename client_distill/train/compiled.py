"""Imported once by a sweep's fork server (:data:`client_distill.sweep.local.PRELOAD`): compile the
augmentation's kernels there (:func:`client_distill.train.augment.warm_up`), so every run forked from
the server starts with them instead of compiling them again. ``VL2V_COMPILE=0`` turns it off."""

from client_distill.train.augment import warm_up

warm_up()
