"""`--help` of every command reads well on an 80-column terminal."""

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from streammuse.cli.main import app


def _commands(cmd, path=()):
    yield list(path), cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(get_command(app)))


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "streammuse" for p, _ in COMMANDS])
def test_help_at_80_columns(path, cmd):
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    out = result.output
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "<bool>" not in out and "<list[" not in out  # flags take no value; lists show their element
    usage = next(line for line in lines if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "argument":
            assert p.name.upper() in usage, usage
    # no description wraps mid-word: every word of every help text is whole in the output
    words = set(re.sub(r"[│╭╮╰╯─]", " ", out).split())
    for p in cmd.params:
        for word in (p.help or "").split():
            assert word in words, (p.name, word)
    if path == []:
        # the command list shows each command's one-line summary, no hard line breaks inside
        for name, sub in get_command(app).commands.items():
            first = (sub.help or "").strip().split("\n\n")[0]
            assert "\n" not in first, name
