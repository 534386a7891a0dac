"""The history browser (``/ui/``) in a real, headless Chromium against a real
``convostore serve --dev`` on SQLite and on PostgreSQL.

One server per backend for the module; each test signs in as its own user, so tests share
the server without seeing each other's data. Chromium is Debian's (``apt-get install
chromium``, done by ``scripts/ensure-chromium.sh`` from ``make test``) driven by Playwright
through ``executable_path``; a missing browser skips these tests locally and fails them in CI.
Screenshots of the main screens are written to ``tests/artifacts/ui/`` (gitignored).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Route, expect, sync_playwright

from convostore.config import Settings
from convostore.server import create_app
from convostore.server.auth import create_access_token
from convostore.server.webui import DEV_ENV
from tests.conftest import IN_CI
from tests.realserver import running_server
from tests.server.conftest import SECRET

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "ui"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough for the 100k-character message the layout test stores.
SERVER_ENV = {"CONVOSTORE_MAX_CONTENT_LENGTH": "200000"}
TIMEOUT_MS = 15_000
_users = itertools.count(1)

XSS_TITLE = '<b id="bold">not bold</b>'
XSS_CONTENT = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">'


# ---------------------------------------------------------------------------- fixtures


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        msg = "Chromium is not installed; run scripts/ensure-chromium.sh (apt-get install chromium)"
        if IN_CI:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def base_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real ``convostore serve --dev`` on a fresh database of the backend."""
    workdir = tmp_path_factory.mktemp(f"ui-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'ui.db'}"
    else:
        url = request.getfixturevalue("pg_database")("convostore_ui")
    with running_server(workdir, url, secret=SECRET, args=["--dev"], env=SERVER_ENV) as base:
        _BACKEND_OF[base] = request.param
        yield base


@pytest.fixture
def page(browser: Any, base_url: str) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1000, "height": 760}, base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def user() -> str:
    """A user of this test only (the module's server is shared)."""
    return f"ui-user-{os.getpid()}-{next(_users)}"


# ---------------------------------------------------------------------------- helpers


def token_for(user: str, **kwargs: Any) -> str:
    return create_access_token(user, secret=SECRET, **kwargs)


def rest(base_url: str, user: str, method: str, path: str, body: Any = None) -> Any:
    response = httpx.request(
        method,
        base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {token_for(user)}"},
        timeout=30,
    )
    assert response.status_code < 300, response.text
    return response.json()


def create_conversation(base_url: str, user: str, title: str | None, messages: list[Any]) -> str:
    conv = rest(base_url, user, "POST", "/v1/conversations", {"title": title, "messages": messages})
    return str(conv["id"])


def conv_url(conv_id: str) -> str:
    return "/ui/#/c/" + conv_id


def sign_in(page: Any, user: str, then: str = "/ui/") -> None:
    """Paste a token for ``user`` into the sign-in form, then go to ``then``."""
    page.goto("/ui/#/signin")
    page.get_by_label("Bearer token").fill(token_for(user))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#who")).to_have_text(f"Signed in as {user}")
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    if then != "/ui/":
        page.goto(then)


def screenshot(page: Any, name: str, base_url: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{_BACKEND_OF[base_url]}.png"))


_BACKEND_OF: dict[str, str] = {}


def no_horizontal_overflow(page: Any) -> None:
    widths = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"page wider than its viewport: {widths}"


def tool_conversation() -> list[dict[str, Any]]:
    calls = [
        {
            "id": "call_weather",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
        },
        {
            "id": "call_time",
            "type": "function",
            "function": {"name": "get_time", "arguments": json.dumps({"tz": "Europe/Paris"})},
        },
    ]
    return [
        {"role": "system", "content": "You are a travel helper."},
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_weather", "content": "18 C, light rain"},
        {"role": "tool", "tool_call_id": "call_time", "content": "14:05 CET"},
        {
            "role": "assistant",
            "content": "It is 14:05 and 18 C with light rain.",
            "metadata": {"model": "gpt-4o", "latency_ms": 812},
        },
    ]


# ---------------------------------------------------------------------------- tests


def test_dev_sign_in_lists_by_recent_activity_and_loads_more(
    page: Any, base_url: str, user: str
) -> None:
    for i in range(23):
        create_conversation(
            base_url,
            user,
            f"Chat number {i}",
            [{"role": "user", "content": f"hello {i}"}, {"role": "assistant", "content": "hi"}],
        )
    page.goto("/")  # redirects to /ui/, then to sign-in
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("heading", name="Development mode")).to_be_visible()
    screenshot(page, "signin", base_url)
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Sign in as this user").click()
    expect(page.locator("#who")).to_have_text(f"Signed in as {user}")
    items = page.locator("#conversations > li")
    expect(items).to_have_count(20)
    expect(items.first.locator("a")).to_have_text("Chat number 22")  # newest first
    expect(items.first).to_contain_text("2 messages")
    expect(items.first).to_contain_text("last activity")
    screenshot(page, "list", base_url)
    page.get_by_role("button", name="Load more conversations").click()
    expect(items).to_have_count(23)
    expect(items.last.locator("a")).to_have_text("Chat number 0")
    expect(page.get_by_role("button", name="Load more conversations")).to_be_hidden()
    titles = items.locator("a").all_text_contents()
    assert titles == [f"Chat number {i}" for i in range(22, -1, -1)]
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('convostore.token')") is None
    page.goto("/ui/#/")  # signed out: the list is not shown
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_conversation_groups_tool_calls_under_their_call(
    page: Any, base_url: str, user: str
) -> None:
    conv = create_conversation(base_url, user, "Paris trip", tool_conversation())
    sign_in(page, user)
    page.get_by_role("link", name="Paris trip").click()
    expect(page.get_by_role("heading", name="Paris trip")).to_be_visible()
    assert page.url.endswith(conv_url(conv))
    top = page.locator("#messages > li")
    # system, user, the assistant with its two calls (results inside), the final answer
    expect(top).to_have_count(4)
    roles = [top.nth(i).locator(".role").first.text_content() for i in range(4)]
    assert roles == ["system", "user", "assistant", "assistant"]
    assert "role-user" in (top.nth(1).get_attribute("class") or "")
    calls = top.nth(2).locator("details.tool-call")
    expect(calls).to_have_count(2)
    weather = calls.first
    expect(weather.locator("summary")).to_contain_text("get_weather")
    expect(weather.locator(".tool-result")).to_be_hidden()  # collapsed
    weather.locator("summary").click()
    expect(weather.locator(".tool-result")).to_be_visible()
    expect(weather.locator(".tool-result .content")).to_have_text("18 C, light rain")
    expect(weather.locator(".arguments")).to_contain_text('"city": "Paris"')
    # Positions and metadata on demand.
    final = top.nth(3)
    expect(final.locator(".position")).to_be_hidden()
    page.get_by_label("Show metadata and positions").check()
    expect(final.locator(".position")).to_have_text("#6")
    expect(final).to_contain_text('"latency_ms": 812')
    # The README's picture: a call opened, the whole conversation in the model's window.
    page.get_by_label("Show metadata and positions").uncheck()
    page.get_by_role("button", name="Highlight the model's window").click()
    expect(page.locator("#window-summary")).to_contain_text("the model gets 6 messages")
    top.nth(1).scroll_into_view_if_needed()
    page.evaluate("() => window.scrollTo(0, document.querySelector('#window-form').offsetTop - 8)")
    screenshot(page, "conversation", base_url)


def test_history_window_highlights_exactly_the_messages_the_model_gets(
    page: Any, base_url: str, user: str
) -> None:
    messages = tool_conversation()
    for i in range(8):
        messages.append({"role": "user", "content": f"question {i}: " + "word " * 40})
        messages.append({"role": "assistant", "content": f"answer {i}: " + "reply " * 40})
    conv = create_conversation(base_url, user, "Window", messages)
    budget = 400
    window = rest(
        base_url, user, "POST", f"/v1/conversations/{conv}/history", {"max_tokens": budget}
    )
    contents = [m["content"] for m in window["messages"]]
    assert 0 < len(contents) < len(messages)  # the budget cuts the conversation somewhere
    stored = rest(base_url, user, "GET", f"/v1/conversations/{conv}/messages?limit=100")["data"]
    expected = {str(m["position"]) for m in stored if m["content"] in contents}
    assert len(expected) == len(contents)  # every content is unique here

    sign_in(page, user, conv_url(conv))
    page.get_by_label("Token budget").fill(str(budget))
    page.get_by_role("button", name="Highlight the model's window").click()
    summary = page.locator("#window-summary")
    expect(summary).to_contain_text(f"the model gets {len(contents)} messages")
    marked = page.locator(".in-window")
    expect(marked).to_have_count(len(expected))
    assert set(marked.evaluate_all("els => els.map(e => e.dataset.position)")) == expected
    # The "in window" badge says it in text too, not only by colour.
    expect(page.locator(".msg-head .badge.window")).to_have_count(len(expected))
    screenshot(page, "window", base_url)
    # A budget covering everything marks every message the window sends.
    page.get_by_label("Token budget").fill("100000")
    page.get_by_role("button", name="Highlight the model's window").click()
    full = rest(base_url, user, "POST", f"/v1/conversations/{conv}/history", {"max_tokens": 100000})
    expect(marked).to_have_count(len(full["messages"]))
    page.get_by_role("button", name="Clear").click()
    expect(marked).to_have_count(0)


def test_rename_then_delete(page: Any, base_url: str, user: str) -> None:
    conv = create_conversation(base_url, user, "Old name", [{"role": "user", "content": "hi"}])
    keep = create_conversation(base_url, user, "Keep me", [{"role": "user", "content": "hey"}])
    sign_in(page, user, conv_url(conv))
    expect(page.get_by_role("heading", name="Old name")).to_be_visible()
    page.get_by_label("Title").fill("New name")
    page.get_by_role("button", name="Rename").click()
    expect(page.get_by_role("heading", name="New name")).to_be_visible()
    assert rest(base_url, user, "GET", f"/v1/conversations/{conv}")["title"] == "New name"
    page.get_by_role("link", name="All conversations").click()
    expect(page.locator("#conversations")).to_contain_text("New name")

    page.get_by_role("link", name="New name").click()
    page.get_by_role("button", name="Delete conversation").click()
    expect(page.locator("#delete-confirm")).to_contain_text("1 message")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#delete-confirm")).to_be_hidden()
    page.get_by_role("button", name="Delete conversation").click()
    page.get_by_role("button", name="Yes, delete it").click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("Deleted “New name”")
    expect(page.locator("#conversations > li")).to_have_count(1)
    expect(page.locator("#conversations")).to_contain_text("Keep me")
    gone = httpx.get(
        f"{base_url}/v1/conversations/{conv}",
        headers={"Authorization": f"Bearer {token_for(user)}"},
    )
    assert gone.status_code == 404
    assert rest(base_url, user, "GET", f"/v1/conversations/{keep}")["title"] == "Keep me"


def test_another_users_conversation_in_the_url_is_not_found(
    page: Any, base_url: str, user: str
) -> None:
    other = create_conversation(
        base_url, user + "-other", "Secret plans", [{"role": "user", "content": "top secret"}]
    )
    sign_in(page, user, conv_url(other))
    expect(page.get_by_role("heading", name="Conversation not found")).to_be_visible()
    assert "Secret plans" not in page.content() and "top secret" not in page.content()
    page.goto(conv_url("999999999"))
    expect(page.get_by_role("heading", name="Conversation not found")).to_be_visible()
    page.goto(conv_url("not-an-id"))
    expect(page.get_by_role("heading", name="Conversation not found")).to_be_visible()
    empty = create_conversation(base_url, user, "Empty", [])
    page.goto(conv_url(empty))
    expect(page.locator("#no-messages")).to_have_text("No messages yet.")


def test_an_expired_token_shows_the_sign_in_again(page: Any, base_url: str, user: str) -> None:
    conv = create_conversation(base_url, user, "Later", [{"role": "user", "content": "hi"}])
    page.goto("/ui/#/signin")
    short = token_for(user, expires_in=3)  # valid for 2 s at least (exp is whole seconds)
    page.get_by_label("Bearer token").fill(short)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("link", name="Later")).to_be_visible()
    expires = jwt.decode(short, options={"verify_signature": False})["exp"]
    time.sleep(max(0.0, expires - time.time() + 0.2))  # the token's own clock: nothing to poll
    page.get_by_role("link", name="Later").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-error")).to_contain_text("sign in again")
    expect(page.locator("#who")).to_have_text("")
    assert page.evaluate("() => sessionStorage.getItem('convostore.token')") is None
    # A token that has already expired is refused at the form.
    expired = token_for(user, expires_in=None, extra_claims={"exp": int(time.time()) - 60})
    page.get_by_label("Bearer token").fill(expired)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#signin-error")).to_contain_text("refused")
    # Signing in again goes back where the person was.
    page.get_by_label("Bearer token").fill(token_for(user))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Later")).to_be_visible()
    assert page.url.endswith(conv_url(conv))


def test_stored_markup_is_shown_as_text(page: Any, base_url: str, user: str) -> None:
    conv = create_conversation(
        base_url,
        user,
        XSS_TITLE,
        [
            {"role": "user", "content": XSS_CONTENT},
            {"role": "assistant", "content": "**not** <i>italic</i> & done"},
        ],
    )
    sign_in(page, user)
    expect(page.get_by_role("link", name=XSS_TITLE)).to_be_visible()
    page.goto(conv_url(conv))
    expect(page.locator("#conv-title")).to_have_text(XSS_TITLE)
    expect(page.locator("#messages > li").first.locator(".content")).to_have_text(XSS_CONTENT)
    assert page.locator("#messages img, #messages script, #messages i, #bold").count() == 0
    assert page.evaluate("() => window.__pwned") is None


def test_long_message_and_long_conversation_on_a_narrow_window(
    browser: Any, base_url: str, user: str
) -> None:
    long_text = "x" * 100_000  # no spaces: nothing to wrap at but the rule itself
    messages: list[dict[str, Any]] = []
    for i in range(999):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"message {i + 1}"})
    messages.append({"role": "assistant", "content": long_text})
    conv = create_conversation(base_url, user, "A thousand messages", messages)

    context = browser.new_context(viewport={"width": 400, "height": 800}, base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, user)
        no_horizontal_overflow(page)
        page.goto(conv_url(conv))
        expect(page.get_by_role("heading", name="A thousand messages")).to_be_visible()
        top = page.locator("#messages > li")
        expect(top).to_have_count(50)  # one page, not a thousand nodes
        expect(top.first).to_contain_text("message 951")
        last = top.last
        show_all = last.get_by_role("button", name="Show all (100,000 characters)")
        expect(show_all).to_be_visible()
        assert len(last.locator(".content").text_content() or "") < 2_100
        no_horizontal_overflow(page)
        screenshot(page, "narrow", base_url)
        show_all.click()
        expect(last.locator(".content")).to_have_text(long_text)
        no_horizontal_overflow(page)
        page.get_by_role("button", name="Load older messages").click()
        expect(top).to_have_count(100)
        expect(top.first).to_contain_text("message 901")
        # The expanded message stays expanded when older pages come in.
        assert len(top.last.locator(".content").text_content() or "") == 100_000
        no_horizontal_overflow(page)
        # A window reaching past the loaded pages says so, and marks what is loaded.
        page.get_by_label("Token budget").fill("100000")
        page.get_by_role("button", name="Highlight the model's window").click()
        expect(page.locator("#window-summary")).to_contain_text("older than those shown")
        expect(page.locator(".in-window")).to_have_count(100)
    finally:
        context.close()


def test_keyboard_only(page: Any, base_url: str, user: str) -> None:
    create_conversation(base_url, user, "Keyboard chat", tool_conversation())
    page.goto("/ui/#/signin")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()

    def tab_to(predicate: str, limit: int = 40) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => {{ const e = document.activeElement; return {predicate}; }}"):
                outline = page.evaluate(
                    "() => getComputedStyle(document.activeElement).outlineStyle"
                )
                assert outline != "none", "focus must be visible"
                return
        raise AssertionError(f"Tab never reached {predicate}")

    tab_to("e.id === 'token'")
    page.keyboard.type(token_for(user))
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    tab_to("e.textContent === 'Keyboard chat'")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Keyboard chat")).to_be_visible()
    tab_to("e.tagName === 'SUMMARY'")
    page.keyboard.press("Enter")
    expect(page.locator("details.tool-call").first.locator(".tool-result")).to_be_visible()
    tab_to("e.id === 'budget'")
    page.keyboard.press("Control+A")
    page.keyboard.type("100000")
    page.keyboard.press("Enter")
    expect(page.locator(".in-window").first).to_be_visible()


def test_search_finds_a_message_and_opens_its_conversation(
    page: Any, base_url: str, user: str
) -> None:
    create_conversation(base_url, user, "Cooking", [{"role": "user", "content": "A pasta recipe?"}])
    create_conversation(base_url, user, "Other", [{"role": "user", "content": "Something else"}])
    sign_in(page, user)
    page.get_by_label("Search messages").fill("pasta")
    page.get_by_role("button", name="Search").click()
    hits = page.locator("#hits > li")
    expect(hits).to_have_count(1)
    expect(hits.first.locator("mark")).to_have_text("pasta")
    hits.first.get_by_role("link", name="Cooking").click()
    expect(page.get_by_role("heading", name="Cooking")).to_be_visible()
    page.goto("/ui/#/search?q=nothingmatchesthis")
    expect(page.locator("#no-hits")).to_be_visible()


def test_the_page_is_public_and_the_dev_token_needs_dev(tmp_path: Path) -> None:
    """Without --dev there is no token minting at all; the page itself needs no token."""
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    with running_server(tmp_path, url, secret=SECRET) as base:
        root = httpx.get(base + "/", follow_redirects=False)
        assert root.status_code in (302, 307) and root.headers["location"] == "/ui/"
        page = httpx.get(base + "/ui/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "app.js" in page.text
        script = httpx.get(base + "/ui/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert httpx.get(base + "/ui/dev").status_code == 404
        minted = httpx.post(base + "/ui/dev-token", json={"user_id": "mallory"})
        assert minted.status_code == 404
        assert "token" not in minted.text
        assert httpx.get(base + "/ui/nothing-here.js").status_code == 404
        assert httpx.get(base + "/v1/conversations").status_code == 401  # the data is not public


def test_the_page_copes_with_string_ids_and_unix_timestamps(page: Any) -> None:
    """The API's ids may become strings ("conv_7") and its times Unix seconds: the page
    treats ids as opaque and reads either time format (API answers stubbed here)."""
    stamp = 1_764_700_000  # 2025-12-02
    conv = {
        "id": "conv_7",
        "object": "conversation",
        "title": "Future shapes",
        "metadata": None,
        "message_count": 2,
        "created_at": stamp,
        "updated_at": stamp,
    }
    messages = [
        {"id": "msg_1", "position": 1, "role": "user", "content": "hi", "created_at": stamp},
        {
            "id": "msg_2",
            "position": 2,
            "role": "assistant",
            "content": "hello",
            "created_at": stamp,
        },
    ]

    def answer(route: Route) -> None:
        url = route.request.url
        method = route.request.method
        if "/v1/conversations/conv_7/messages" in url:
            body: Any = {"data": messages[::-1], "has_more": False, "next_cursor": None}
        elif "/v1/conversations/conv_7" in url and method == "DELETE":
            body = {"id": "conv_7", "object": "conversation.deleted", "deleted": True}
        elif "/v1/conversations/conv_7" in url:
            body = conv
        elif "/v1/conversations/conv_bad" in url:
            error = {"type": "invalid_request_error", "code": "validation_error"}
            body = {"error": {**error, "message": "bad id", "param": "conversation_id"}}
            route.fulfill(status=400, json=body)
            return
        else:
            body = {"data": [conv], "has_more": False, "next_cursor": None}
        route.fulfill(json=body)

    page.route("**/v1/**", answer)
    sign_in(page, "alice")
    link = page.get_by_role("link", name="Future shapes")
    expect(link).to_have_attribute("href", "#/c/conv_7")
    expect(page.locator("#conversations time").first).to_have_attribute(
        "datetime", "2025-12-02T18:26:40.000Z"
    )
    link.click()
    expect(page.get_by_role("heading", name="Future shapes")).to_be_visible()
    expect(page.locator("#messages > li")).to_have_count(2)
    expect(page.locator("#messages time").first).to_have_attribute(
        "datetime", "2025-12-02T18:26:40.000Z"
    )
    page.get_by_role("button", name="Delete conversation").click()
    page.get_by_role("button", name="Yes, delete it").click()
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    expect(page.locator("#status")).to_contain_text("Deleted")
    page.goto(conv_url("conv_bad"))
    expect(page.get_by_role("heading", name="Conversation not found")).to_be_visible()
    expect(page.locator("#not-found")).to_contain_text("bad id")


# ---------------------------------------------------------------------------- in process


def ui_client(dev: bool | None, **settings: Any) -> TestClient:
    """The app without its lifespan: the UI routes need no database."""
    config = Settings(database_url="sqlite://", jwt_secret_key=SECRET, **settings)
    return TestClient(create_app(config, dev=dev))


def test_the_dev_token_is_a_valid_token_of_this_server() -> None:
    client = ui_client(True, jwt_issuer="https://id.example", jwt_audience="convostore")
    assert client.get("/ui/dev").json() == {"dev": True}
    minted = client.post("/ui/dev-token", json={"user_id": "alice"})
    assert minted.status_code == 200, minted.text
    body = minted.json()
    claims = jwt.decode(
        body["token"],
        SECRET,
        algorithms=["HS256"],
        audience="convostore",
        issuer="https://id.example",
    )
    assert claims["sub"] == "alice" == body["user_id"]
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 3600
    capped = ui_client(True, jwt_max_lifetime=600).post("/ui/dev-token", json={"user_id": "bo"})
    assert capped.json()["expires_in"] == 600


@pytest.mark.parametrize("body", [{"user_id": ""}, {}, {"user_id": "a", "admin": True}])
def test_the_dev_token_refuses_bad_input(body: dict[str, Any]) -> None:
    response = ui_client(True).post("/ui/dev-token", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_dev_routes_follow_the_flag_and_serves_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ui_client(False).get("/ui/dev").status_code == 404
    assert ui_client(False).post("/ui/dev-token", json={"user_id": "a"}).status_code == 404
    monkeypatch.setenv(DEV_ENV, "1")
    assert ui_client(None).get("/ui/dev").status_code == 200
    assert ui_client(False).get("/ui/dev").status_code == 404
    monkeypatch.delenv(DEV_ENV)
    assert ui_client(None).get("/ui/dev").status_code == 404


def test_the_ui_is_not_part_of_the_api_schema() -> None:
    client = ui_client(True)
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]
    assert client.get("/ui", follow_redirects=False).headers.get("location") == "/ui/"
    assert client.get("/ui/", params={"anything": "1"}).status_code == 200
    put = client.put("/ui/app.js")
    assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD"
