"""The ``convostore`` command line: ``convostore --help`` lists every command.

Sub-commands live one group per module; each registers itself on :data:`app` here.
"""

from __future__ import annotations

import typer

from convostore.cli import browse, db, keys, purge, serve, transfer

app = typer.Typer(
    name="convostore",
    help="convostore: the conversation database behind a stateless AI chat endpoint.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.command()(serve.serve)
app.command()(serve.token)
app.add_typer(browse.conversations_app, name="conversations")
app.add_typer(browse.messages_app, name="messages")
app.command()(browse.search)
app.command()(transfer.export)
app.command("import")(transfer.import_)
app.command()(transfer.stats)
app.command()(purge.purge)


def main() -> None:
    """Console-script entry point."""
    app()
