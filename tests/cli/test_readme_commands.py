"""Every command the README's "The command line" block shows exists (answers ``--help``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from convostore.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
_WORD = re.compile(r"^[a-z][a-z-]*$")


def _commands() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    block = text.split("## The command line", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    out = []
    for line in block.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "convostore":
            continue
        command: list[str] = []
        for word in words[1:3]:
            if not _WORD.match(word):
                break
            command.append(word)
        out.append(command)
    return out


COMMANDS = _commands()


def test_the_block_was_found() -> None:
    assert len(COMMANDS) >= 10
    assert ["search"] in COMMANDS and ["keys", "create"] in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "convostore")
def test_each_command_answers_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
