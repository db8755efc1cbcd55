"""Imported once by a sweep's fork server (:data:`client_distill.sweep.local.PRELOAD`): compile the
augmentation's kernels there (:func:`client_distill.train.augment.warm_up`) for the thread count the
sweep's runs will have (``VL2V_RUN_THREADS``, set by the sweep), so every run forked from the server
starts with them instead of compiling them again. ``VL2V_COMPILE=0`` turns it off."""

import os

from client_distill.train.augment import RUN_THREADS_ENV, warm_up

warm_up(int(os.environ.get(RUN_THREADS_ENV, "0")) or None)
