"""`vl2v --help` and the cheap sub-commands start without importing torch, timm or open_clip (seconds of
start-up on a small machine), while the choices that need the method registry stay complete."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "timm", "open_clip")
#: runs `vl2v ARGV...` in a fresh interpreter, then prints the heavy modules it imported as JSON
PROBE = f"""
import json, sys
from client_distill.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""


DISTILL = ["distill", "--method", "erm", "--data", "d", "--test-domain", "t", "--out", "o"]


def vl2v_imports(*argv: str) -> tuple[list[str], str]:
    """(heavy modules imported, stdout) of one `vl2v` call."""
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120, check=True)
    *output, last = done.stdout.splitlines()
    return json.loads(last), "\n".join(output)


@pytest.mark.parametrize(
    "command", ["", "data synth", "distill", "embed", "pretrain-student", "probe", "sweep", "report", "demo"]
)
def test_help_does_not_import_torch(command):
    heavy, _ = vl2v_imports(*command.split(), "--help")
    assert heavy == []


def test_cache_stats_does_not_import_torch(tmp_path):
    from client_distill.buy.cache import EmbeddingCache

    EmbeddingCache(tmp_path / "cache").close()
    heavy, out = vl2v_imports("cache", "stats", "--cache", str(tmp_path / "cache"))
    assert heavy == [] and json.loads(out)["ledger"]


def test_distill_help_lists_every_registered_method():
    from client_distill.methods.catalog import method_names
    from client_distill.methods.registry import methods  # imports torch, in this process only

    assert method_names() == sorted(methods())  # the names read from the source are the registered classes
    _, out = vl2v_imports("distill", "--help")
    assert all(name in out for name in methods())


@pytest.mark.parametrize(
    ("argv", "old"),
    [
        (["embed", "--data", "d", "--out", "o", "--max-queries", "5", "--budget", "5"], "--budget"),
        (DISTILL + ["--no-pretrained"], "--no-pretrained"),  # now --random-init
        (DISTILL + ["--cache-dir", "c"], "--cache-dir"),  # now --cache
    ],
)
def test_an_old_flag_name_is_argparses_error(argv, old, capsys):
    """Flags renamed so that each name means one thing are not kept as aliases."""
    from client_distill.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and f"unrecognized arguments: {old}" in capsys.readouterr().err
