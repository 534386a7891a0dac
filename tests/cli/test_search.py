"""``convostore search --user U "query"``: a readable table of the user's hits."""

from __future__ import annotations

from typer.testing import CliRunner

from convostore import Store
from convostore.cli import app


def test_search_prints_the_users_hits(runner: CliRunner, store: Store, db_url: str) -> None:
    conv = store.create_conversation(
        "alice",
        title="Garden",
        messages=[
            {"role": "user", "content": "When do tulips bloom?"},
            {"role": "assistant", "content": "Tulips bloom in spring [usually April]."},
            {"role": "user", "content": "Thanks"},
        ],
    )
    store.create_conversation("bob", messages=[{"role": "user", "content": "bob's tulips"}])
    args = ["search", "--user", "alice", "tulips", "--database-url", db_url]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Tulips bloom in spring [usually April]." in result.output  # text, not markup
    assert f"{conv.id} Garden" in result.output and "bob" not in result.output
    only = runner.invoke(app, [*args, "--role", "user"])
    assert "When do tulips bloom?" in only.output and "spring" not in only.output
    one = runner.invoke(app, [*args, "--limit", "1"])
    assert one.exit_code == 0 and "--after" in one.output, one.output
    cursor = one.output.split("--after", 1)[1].split()[0]
    rest = runner.invoke(app, [*args, "--after", cursor])
    assert rest.exit_code == 0 and "--after" not in rest.output
    both = one.output + rest.output
    assert "bloom?" in both and "spring" in both
    none = runner.invoke(app, ["search", "--user", "alice", "roses", "--database-url", db_url])
    assert none.exit_code == 0 and "no matches" in none.output


def test_search_errors_are_one_line(runner: CliRunner, store: Store, db_url: str) -> None:
    result = runner.invoke(app, ["search", "--user", "alice", "x" * 2000, "--database-url", db_url])
    assert result.exit_code == 1
    assert "query: must be at most 1000 characters" in result.output
    assert "Traceback" not in result.output
