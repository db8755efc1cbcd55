"""The client's settings: ``VL2V_*`` variables become the defaults of the flags that override them, a
flag beats the environment, and a bad value is a one-line error, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from client_distill.buy.settings import ClientSettings, load_settings
from client_distill.cli import COMMAND_MODULES, main
from shared.cli import build_parser

ENV = {
    "VL2V_VENDOR": "jina",
    "VL2V_VENDOR_URL": "http://vendor.test",
    "VL2V_API_KEY": "secret",
    "VL2V_MODEL": "clip-x",
    "VL2V_CACHE": "/tmp/somewhere",
}
EMBED = ["embed", "--data", "d", "--max-queries", "5", "--out", "o"]


@pytest.fixture
def env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def parse(argv: list[str]):
    return build_parser("vl2v", None, COMMAND_MODULES, load_settings()).parse_args(argv)


def test_defaults_without_environment(env):
    assert ClientSettings() == ClientSettings(
        vendor="vl2v", vendor_url=None, api_key=None, model=None, cache=Path("~/.cache/vl2v/embeddings")
    )


def test_environment_gives_the_defaults(env):
    for name, value in ENV.items():
        env.setenv(name, value)
    args = parse(EMBED)
    assert (args.vendor, args.vendor_url, args.api_key) == ("jina", "http://vendor.test", "secret")
    assert args.model == "clip-x"
    assert args.cache == Path("/tmp/somewhere")
    assert (
        parse(["cache", "stats"]).cache
        == parse(["distill", "--method", "erm", "--data", "d", "--test-domain", "t", "--out", "o"]).cache
        == Path("/tmp/somewhere")
    )
    demo = parse(["demo"])
    assert (demo.vendor, demo.vendor_url, demo.api_key) == ("jina", "http://vendor.test", "secret")


def test_a_flag_beats_the_environment(env):
    for name, value in ENV.items():
        env.setenv(name, value)
    args = parse(
        [*EMBED, "--vendor", "openai", "--vendor-url", "http://other", "--api-key", "k", "--model", "m", "--cache", "c"]
    )
    assert (args.vendor, args.vendor_url, args.api_key, args.model) == ("openai", "http://other", "k", "m")
    assert args.cache == "c"


def test_an_unknown_vendor_is_a_one_line_error(env, capsys):
    env.setenv("VL2V_VENDOR", "nope")
    assert main(["cache", "stats"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vl2v: error: invalid setting VL2V_VENDOR='nope'") and "jina, openai, vl2v" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_key_file_beats_the_environment_and_excludes_the_flag(env, tmp_path, capsys):
    from client_distill.commands.common import vendor_config

    env.setenv("VL2V_API_KEY", "from-env")
    key = tmp_path / "key.txt"
    key.write_text("  from-file\n")
    assert vendor_config(parse([*EMBED, "--api-key-file", str(key)])).secret == "from-file"
    assert vendor_config(parse(EMBED)).secret == "from-env"
    with pytest.raises(SystemExit) as exit_:
        parse([*EMBED, "--api-key", "k", "--api-key-file", str(key)])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "says"), [(None, "cannot read --api-key-file"), ("\n", "is empty")])
def test_a_bad_key_file_is_a_one_line_error(env, tmp_path, capsys, content, says):
    key = tmp_path / "key.txt"
    if content is not None:
        key.write_text(content)
    assert (
        main(["cache", "stats", "--cache", str(tmp_path), "--api-key-file", str(key), "--vendor-url", "http://x"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("vl2v: error: ") and says in err and err.count("\n") == 1
