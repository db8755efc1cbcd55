"""The launchers of a sweep's runs, by name (``vl2v sweep --launcher NAME``). A launcher's module is
imported only when it is chosen, so the default path never imports another's engine (``ray``).
Imports no launcher itself: the command line lists the names without loading them."""

from __future__ import annotations

import importlib

from client_distill.errors import UsageError
from client_distill.sweep.launch import Launcher, LaunchOptions

#: launcher name → ``module:factory`` taking :class:`~client_distill.sweep.launch.LaunchOptions`
LAUNCHERS = {
    "local": "client_distill.sweep.local:RunPool.from_options",
    "ray": "client_distill.sweep.ray_pool:RayPool.from_options",
}


def open_launcher(options: LaunchOptions) -> Launcher:
    """The launcher ``options.launcher`` names, opened with ``options``."""
    if options.launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher {options.launcher!r}; known: {', '.join(sorted(LAUNCHERS))}")
    module, factory = LAUNCHERS[options.launcher].split(":")
    target: object = importlib.import_module(module)
    for name in factory.split("."):
        target = getattr(target, name)
    return target(options)  # type: ignore[operator]
