"""Which random stream an image of the world is drawn from: the vendor's pretraining corpus, the student's
pretraining corpus and every client task are rendered from **disjoint** streams, whatever seeds are
picked, so no client image (target domain included) is one either model was trained on.

A stream is the words a generator's seed starts with; an image's generator is seeded by those words
followed by its own indices (``seed, style, class, n``). numpy's ``SeedSequence`` hashes the whole word
list, so two lists that differ in their first word or in their length give unrelated streams: a client
seed can never reproduce a corpus image, whatever number it is. ``tests/test_world.py``'s disjointness
test checks it on pixels.

The vendor's stream has no tag word: it is the layout its committed corpus was rendered with, so the
commands in ``vendor_server/weights/README.md`` still reproduce that corpus.
"""

from __future__ import annotations

from enum import Enum

import numpy as np


class Stream(Enum):
    """The world's random streams, by who renders from them (value: the tag words that start a seed)."""

    VENDOR = ()  # the vendor's pretraining corpus and its own held-out zero-shot checks
    CLIENT = (0x5EED_C11E,)  # `vl2v data synth`: every client task, calibration included
    STUDENT = (0x9E37_79B9,)  # `vl2v pretrain-student`: the student's corpus and its test sets


def stream_rng(stream: Stream, *words: int) -> np.random.Generator:
    """A generator of ``stream`` keyed by ``words`` (an image's indices)."""
    return np.random.default_rng([*stream.value, *(int(w) for w in words)])
