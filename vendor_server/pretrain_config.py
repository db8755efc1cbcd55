"""Settings of ``vl2v-vendor pretrain``, kept apart from the training code so that building the
command line (every ``vl2v-vendor`` call does it) never imports torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 900
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.02
    warmup: int = 40
    per_cell: int = 64  # pool images per (class, style): 24 gave 0.81 on photo after 800 steps, 64 gave 0.86
    ce_weight: float = 1.0
    aux_weight: float = 1.0
    seed: int = 0
    size: int = 64
    checkpoint_every: int = 100
    workers: int = 2
    init: str | None = None  # a vl2v-tiny checkpoint to continue from instead of random init
    #: styles whose images the class-prompt cross-entropy and the temporary prototypes train on (comma-
    #: separated; None: every style). The caption loss always covers every style.
    ce_styles: str | None = None
    #: the share of (class, style) cells the corpus holds beyond photo: a web corpus has photos of
    #: everything but sketches or paintings of only some things. Which cells is fixed by the style and
    #: class alone (not by ``seed``), so every stage of a recipe sees the same ones.
    cell_coverage: float = 1.0
    #: how often a caption names the object's colour and its habitat where the style shows them (None:
    #: the corpus's usual 0.6 and 0.3, :mod:`shared.world.captions`)
    context_said: float | None = None
