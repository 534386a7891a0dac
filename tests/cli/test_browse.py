"""``convostore conversations list`` and ``convostore messages show``."""

from __future__ import annotations

from typer.testing import CliRunner

from convostore import Store
from convostore.cli import app


def test_conversations_list_pages(runner: CliRunner, store: Store, db_url: str) -> None:
    ids = [store.create_conversation("alice", title=f"chat {i}").id for i in range(3)]
    store.create_conversation("bob", title="bob's chat")
    first = runner.invoke(
        app, ["conversations", "list", "--user", "alice", "--limit", "2", "--database-url", db_url]
    )
    assert first.exit_code == 0, first.output
    assert "chat 2" in first.output and "chat 1" in first.output and "chat 0" not in first.output
    assert "bob's chat" not in first.output
    cursor = first.output.split("--after", 1)[1].split()[0]
    second = runner.invoke(
        app,
        [
            "conversations",
            "list",
            "--user",
            "alice",
            "--limit",
            "2",
            "--after",
            cursor,
            "--database-url",
            db_url,
        ],
    )
    assert second.exit_code == 0, second.output
    assert "chat 0" in second.output and "--after" not in second.output
    assert str(ids[0]) in second.output


def test_messages_show(runner: CliRunner, store: Store, db_url: str) -> None:
    conv = store.create_conversation(
        "alice",
        messages=[
            {"role": "user", "content": "Weather in Ghent?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "content": "12C", "tool_call_id": "c1"},
        ],
    )
    result = runner.invoke(
        app, ["messages", "show", str(conv.id), "--user", "alice", "--database-url", db_url]
    )
    assert result.exit_code == 0, result.output
    assert "Weather in Ghent?" in result.output
    assert "tool calls: weather" in result.output and "result of c1" in result.output


def test_other_users_conversation_is_not_found(
    runner: CliRunner, store: Store, db_url: str
) -> None:
    conv = store.create_conversation("alice", messages=[{"role": "user", "content": "private"}])
    result = runner.invoke(
        app, ["messages", "show", str(conv.id), "--user", "mallory", "--database-url", db_url]
    )
    assert result.exit_code == 1
    assert f"conversation {conv.id} not found" in result.output
    assert "private" not in result.output


def test_bad_cursor_is_a_clear_error(runner: CliRunner, db_url: str) -> None:
    result = runner.invoke(
        app, ["conversations", "list", "--user", "a", "--after", "zzz", "--database-url", db_url]
    )
    assert result.exit_code == 1 and "cursor" in result.output and "Traceback" not in result.output


def test_error_messages_keep_brackets() -> None:
    import pytest
    import typer

    from convostore.cli._common import err_console, friendly_errors
    from convostore.errors import ValidationError

    with err_console.capture() as captured, pytest.raises(typer.Exit):
        with friendly_errors():
            raise ValidationError("messages[0].content", "must not be empty")
    assert "messages[0].content: must not be empty" in captured.get()
