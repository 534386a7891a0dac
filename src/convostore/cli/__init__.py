"""The ``convostore`` command line: ``convostore --help`` lists every command.

Sub-commands live one group per module; each registers itself on :data:`app` here.
"""

from __future__ import annotations

import typer

from convostore.cli import db

app = typer.Typer(
    name="convostore",
    help="convostore: the conversation database behind a stateless AI chat endpoint.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db.app, name="db")


def main() -> None:
    """Console-script entry point."""
    app()
