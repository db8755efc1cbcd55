"""The client tasks the world offers, in DomainBed terms: a set of domains (styles) and classes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    domains: tuple[str, ...]
    classes: tuple[str, ...]


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        # PACS's domains and (drawn) classes: quadrupeds that share a skeleton make it non-trivial
        Task(
            "synth-pacs",
            ("art_painting", "cartoon", "photo", "sketch"),
            ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person"),
        ),
        # Office-Home's shape: more classes, and a product-shot domain that is not in synth-pacs
        Task(
            "synth-officehome",
            ("art_painting", "cartoon", "product", "photo"),
            (
                "apple",
                "bell",
                "bottle",
                "boat",
                "candle",
                "car",
                "chair",
                "clock",
                "cup",
                "fish",
                "flower",
                "hat",
                "key",
                "light bulb",
                "leaf",
                "mushroom",
                "rocket",
                "airplane",
                "snowman",
                "sun",
                "table",
                "tent",
                "tree",
                "umbrella",
                "anchor",
                "butterfly",
            ),
        ),
    ]
}

#: every style some client task uses; the others exist only in the vendor's corpus
CLIENT_STYLES: tuple[str, ...] = tuple(dict.fromkeys(d for t in TASKS.values() for d in t.domains))
