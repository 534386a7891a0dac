"""Full-text search: quality on a fixed corpus, isolation, paging, bad input, index upkeep.

Every test runs on both databases; the corpus (``tests/data/search_corpus.json``, made by
``make_search_corpus.py``) holds ~350 messages of three users, with planted words,
phrases, accents, CJK and emoji.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlmodel import Session

from convostore import Store, ValidationError
from convostore.db import make_engine
from convostore.models import Message
from convostore.schemas import MAX_QUERY_LENGTH, Page, SearchHit
from tests.conftest import MaybeAsync

CORPUS = json.loads((Path(__file__).parent / "data" / "search_corpus.json").read_text("utf-8"))

Ref = tuple[str, int]  # (external id, position) of a message; position 0: the title


def load_corpus(store: Store) -> dict[int, str]:
    """Store the corpus; conversation id -> external id."""
    external: dict[int, str] = {}
    for user, conversations in CORPUS["users"].items():
        for conv in conversations:
            created = store.create_conversation(
                user,
                title=conv["title"],
                external_id=conv["external_id"],
                messages=conv["messages"],
            )
            external[created.id] = conv["external_id"]
    return external


@pytest.fixture
def corpus(store: Store) -> dict[int, str]:
    return load_corpus(store)


def refs(page: Page[SearchHit], external: dict[int, str]) -> set[Ref]:
    out = set()
    for hit in page.data:
        if hit.kind == "title":
            out.add((external[hit.conversation_id], 0))
        else:
            assert hit.message is not None
            out.add((external[hit.conversation_id], hit.message.position))
    return out


def everything(store: Store, user: str, query: str, **kwargs: Any) -> Page[SearchHit]:
    page = store.search(user, query, limit=100, **kwargs)
    assert not page.has_more
    return page


# (user, query, expected hits); position 0 is a title hit.
QUALITY: list[tuple[str, str, set[Ref]]] = [
    # a word, case-insensitive, only the user's own
    ("ana", "photosynthesis", {("ana-1", 3), ("ana-4", 1)}),
    ("ana", "PHOTOSYNTHESIS", {("ana-1", 3), ("ana-4", 1)}),
    ("bo", "photosynthesis", {("bo-0", 2)}),
    ("chen", "photosynthesis", set()),
    # phrase vs. all words
    ("ana", '"machine learning"', {("ana-2", 2)}),
    ("ana", '"learning machine"', {("ana-3", 4)}),
    ("ana", "machine learning", {("ana-2", 2), ("ana-3", 4), ("ana-5", 2)}),
    ("ana", "machine learning photosynthesis", set()),
    # prefix, deliberately; a bare fragment is not a prefix
    ("ana", "kube*", {("ana-6", 1), ("ana-6", 2)}),
    ("ana", "photo*", {("ana-1", 3), ("ana-4", 1)}),
    ("ana", "kube", set()),
    ("ana", "kubectl deploy*", {("ana-6", 2)}),
    # accents, German, French
    ("ana", "crème brûlée", {("ana-7", 1), ("ana-7", 2)}),
    ("bo", "Straße", {("bo-2", 1)}),
    ("bo", "Bäume grün", {("bo-2", 1)}),
    ("bo", "café naïve", {("bo-2", 2)}),
    # CJK as whole tokens
    ("chen", "编程", {("chen-0", 1), ("chen-0", 2)}),
    ("chen", "東京 タワー", {("chen-1", 1)}),
    # emoji around words; the title too
    ("chen", "pizza", {("chen-2", 0), ("chen-2", 1), ("chen-2", 2)}),
    ("chen", "margherita", {("chen-2", 2)}),
    # punctuation inside words
    ("ana", "3.14", {("ana-0", 5)}),
    ("ana", "e-mail", {("ana-0", 5)}),
    ("bo", "PostgreSQL", {("bo-3", 1), ("bo-3", 2)}),
    # a title hit with no message hit
    ("ana", "budget", {("ana-0", 0)}),
    ("ana", "quarterly budget", {("ana-0", 0)}),
    # tool results are indexed; tool-call arguments and metadata are not
    ("bo", "lisbon", {("bo-4", -1)}),
    ("bo", "zanzibar", set()),
    ("bo", "secretmeta", set()),
    # syntax of either engine is plain text here
    ("bo", "refactor OR nothing", set()),
    ("bo", "refactor -parser", {("bo-1", 1)}),  # "-" is no negation: the word "parser"
    ("bo", "refactor AND", set()),
]


@pytest.mark.parametrize(("user", "query", "expected"), QUALITY, ids=[q[1] for q in QUALITY])
def test_corpus_quality(
    store: Store, corpus: dict[int, str], user: str, query: str, expected: set[Ref]
) -> None:
    if ("bo-4", -1) in expected:  # the tool result: the conversation's last message
        last = store.get_conversation_by_external_id("bo", "bo-4").message_count
        expected = {("bo-4", last)}
    page = everything(store, user, query)
    assert refs(page, corpus) == expected
    assert all(hit.conversation_title for hit in page.data)
    assert all(hit.message is None or hit.message.user_id == user for hit in page.data)


def test_accents_fold_on_sqlite_only(store: Store, corpus: dict[int, str]) -> None:
    """SQLite's tokenizer removes diacritics; PostgreSQL's ``simple`` configuration keeps
    them (a configuration with ``unaccent`` can be set as CONVOSTORE_SEARCH_CONFIG)."""
    found = refs(everything(store, "ana", "creme brulee"), corpus)
    pg = store.engine.dialect.name == "postgresql"
    assert found == (set() if pg else {("ana-7", 1), ("ana-7", 2)})


def test_snippets_highlight_matches_and_ranks_order_hits(
    store: Store, corpus: dict[int, str]
) -> None:
    page = everything(store, "ana", "photosynthesis")
    assert all("**photosynthesis**" in hit.snippet.lower() for hit in page.data)
    ranks = [hit.rank for hit in page.data]
    assert ranks == sorted(ranks, reverse=True) and all(r > 0 for r in ranks)
    title = everything(store, "ana", "budget").data[0]
    assert title.kind == "title" and title.snippet == "Quarterly **budget** review"
    # A title hit carries its conversation's newest message.
    conv = store.get_conversation_by_external_id("ana", "ana-0")
    assert title.message is not None and title.message.position == conv.message_count


def test_more_matches_rank_higher(store: Store) -> None:
    conv = store.create_conversation("dee", title="t")
    store.append_messages(
        "dee",
        conv.id,
        [
            {"role": "user", "content": "one mention of zebra among many other words here"},
            {"role": "assistant", "content": "zebra zebra zebra"},
        ],
    )
    page = store.search("dee", "zebra")
    assert [h.message.position for h in page.data if h.message] == [2, 1]


def test_filters(store: Store, corpus: dict[int, str]) -> None:
    assert refs(everything(store, "bo", "refactor"), corpus) == {("bo-1", 1), ("bo-1", 2)}
    only = everything(store, "bo", "refactor", roles=["assistant"])
    assert refs(only, corpus) == {("bo-1", 2)}
    # roles leave title hits out; conversation_id narrows both kinds
    assert everything(store, "chen", "pizza", roles=["user", "assistant"]).data[0].kind == (
        "message"
    )
    pizza = store.get_conversation_by_external_id("chen", "chen-2")
    assert len(everything(store, "chen", "pizza", conversation_id=pizza.id).data) == 3
    other = store.get_conversation_by_external_id("chen", "chen-0")
    assert everything(store, "chen", "pizza", conversation_id=other.id).data == []
    # another user's conversation id finds nothing (not an error that would confirm it)
    assert everything(store, "ana", "pizza", conversation_id=pizza.id).data == []
    future = datetime.now(UTC) + timedelta(days=1)
    assert everything(store, "bo", "refactor", since=future).data == []
    assert len(everything(store, "bo", "refactor", until=future).data) == 2
    naive_future = future.replace(tzinfo=None)  # naive is UTC, as everywhere
    assert everything(store, "bo", "refactor", since=naive_future).data == []


def test_paging_yields_every_hit_once_in_rank_order(store: Store, corpus: dict[int, str]) -> None:
    """A filler word with many hits and many tied ranks, 7 at a time."""
    whole = everything(store, "ana", "project")
    assert len(whole.data) > 20
    seen: list[SearchHit] = []
    cursor = None
    while True:
        page = store.search("ana", "project", limit=7, cursor=cursor)
        seen += page.data
        if not page.has_more:
            assert page.next_cursor is None
            break
        assert len(page.data) == 7 and page.next_cursor is not None
        cursor = page.next_cursor
    key = [(h.kind, h.message.id if h.message else 0) for h in seen]
    assert len(key) == len(set(key))
    assert [h.model_dump() for h in seen] == [h.model_dump() for h in whole.data]
    assert store.search("ana", "project", limit=0).data == []


async def test_search_on_both_apis(api: MaybeAsync) -> None:
    conv = await api.create_conversation("eve", messages=[{"role": "user", "content": "hola"}])
    page = await api.search("eve", "hola")
    assert [h.message.id for h in page.data if h.message and h.kind == "message"] == [
        m.id for m in await api.get_messages("eve", conv.id)
    ]
    assert [h.kind for h in page.data] == ["title", "message"]  # auto title "hola"
    with pytest.raises(ValidationError):
        await api.search("eve", "x" * (MAX_QUERY_LENGTH + 1))


# ----------------------------------------------------------------------- bad input


@pytest.mark.parametrize("query", ["", "   ", "\t\n", "!!!", "...,;:", "🍕🎉", '""', "*", "-"])
def test_queries_without_words_are_an_empty_page(
    store: Store, corpus: dict[int, str], query: str
) -> None:
    assert store.search("ana", query) == Page(data=[], has_more=False, next_cursor=None)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"query": "x" * (MAX_QUERY_LENGTH + 1)}, "query"),
        ({"query": "word " * 2000}, "query"),
        ({"query": "a\x00b"}, "query"),
        ({"query": "a\x07b"}, "query"),
        ({"query": "\ud800"}, "query"),
        ({"query": 5}, "query"),
        ({"limit": -1}, "limit"),
        ({"limit": 101}, "limit"),
        ({"cursor": "nonsense"}, "cursor"),
        ({"cursor": "WzEsMiwzXQ"}, "cursor"),  # [1,2,3]: no such kind
        ({"roles": ["robot"]}, "roles"),
        ({"roles": "user"}, "roles"),
        ({"since": "2020-01-01"}, "since"),
        ({"until": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))}, "until"),
        ({"until": datetime(2000, 1, 1, tzinfo=UTC)}, None),
        ({"conversation_id": "1"}, "conversation_id"),
    ],
)
def test_bad_arguments_are_validation_errors(
    store: Store, kwargs: dict[str, Any], field: str | None
) -> None:
    args = {"query": "hello", **kwargs}
    if field is None:  # accepted
        store.search("ana", **args)
        return
    with pytest.raises(ValidationError) as err:
        store.search("ana", **args)
    assert err.value.field == field


SYNTAX = st.sampled_from(
    ['"', "'", "*", "-", "^", ":", "(", ")", "{", "}", "NEAR", "OR", "AND", "NOT", "&", "|",
     "!", "<->", ":*", "\\", "col:", "+", " ", "é", "编", "🍕", "_", "0"]
)  # fmt: skip
QUERIES = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(SYNTAX, st.text(max_size=4)), max_size=20).map("".join),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=QUERIES)
def test_any_text_answers_a_page_or_a_validation_error(store: Store, query: str) -> None:
    if not store.search("ana", "seed").data:  # first example: a little to match against
        store.create_conversation("ana", messages=[{"role": "user", "content": "seed é 编 0"}])
    try:
        page = store.search("ana", query, limit=5)
    except ValidationError as exc:
        assert exc.field == "query"
        return
    assert all(h.message is None or h.message.user_id == "ana" for h in page.data)
    if page.next_cursor:
        store.search("ana", query, limit=5, cursor=page.next_cursor)


# ------------------------------------------------------------------------ isolation

WORDS = ["alpha", "beta", "gamma", "delta", "omega"]
TEXTS = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
USER_DATA = st.lists(  # per user: conversations of (title, messages)
    st.lists(st.tuples(TEXTS, st.lists(TEXTS, min_size=1, max_size=4)), max_size=3),
    min_size=2,
    max_size=3,
)


def _all_pages(store: Store, user: str, query: str) -> list[dict[str, Any]]:
    hits: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = store.search(user, query, limit=3, cursor=cursor)
        hits += [h.model_dump() for h in page.data]
        if not page.has_more:
            return hits
        cursor = page.next_cursor


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=USER_DATA)
def test_isolation_model(store: Store, data: list[list[tuple[str, list[str]]]]) -> None:
    """Each user finds exactly their own matches (a model of the corpus in Python), and
    every hit, rank and page is the same once every other user's data is gone."""
    tag = uuid.uuid4().hex[:8]
    users = [f"{tag}-{i}" for i in range(len(data))]
    model: dict[str, dict[tuple[str, int], str]] = {}
    for user, conversations in zip(users, data, strict=True):
        model[user] = {}
        for title, texts in conversations:
            conv = store.create_conversation(
                user, title=title, messages=[{"role": "user", "content": t} for t in texts]
            )
            model[user][("title", conv.id)] = title
            for m in store.get_messages(user, conv.id):
                model[user][("message", m.id)] = m.content
    matchers = {
        **{w: lambda t, w=w: w in t.split() for w in WORDS},
        "alpha beta": lambda t: {"alpha", "beta"} <= set(t.split()),
        '"alpha beta"': lambda t: " alpha beta " in f" {t} ",
        "gam*": lambda t: "gamma" in t.split(),
        "zeta": lambda t: False,
    }
    before = {(u, q): _all_pages(store, u, q) for u in users for q in matchers}
    for user in users:
        for query, matches in matchers.items():
            expected = {key for key, body in model[user].items() if matches(body)}
            got = {
                (h["kind"], h["conversation_id"] if h["kind"] == "title" else h["message"]["id"])
                for h in before[(user, query)]
            }
            assert got == expected, (user, query)
    keep = users[0]
    for other in users[1:]:
        store.delete_user(other)
    for query in matchers:
        assert _all_pages(store, keep, query) == before[(keep, query)], query
    store.delete_user(keep)


# ---------------------------------------------------------------- index upkeep


@pytest.fixture
def raw(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _index_in_sync(raw: Engine) -> None:
    """SQLite: the FTS index holds exactly the rows of its tables (FTS5's own check)."""
    if raw.dialect.name != "sqlite":
        return
    with raw.begin() as conn:
        for fts, table in (("messages_fts", "messages"), ("conversations_fts", "conversations")):
            conn.execute(text(f"INSERT INTO {fts} ({fts}, rank) VALUES ('integrity-check', 1)"))
            n_index = conn.execute(text(f"SELECT count(*) FROM {fts}_docsize")).scalar_one()
            n_rows = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            assert n_index == n_rows, fts


def test_messages_written_the_orm_way_are_indexed(store: Store, raw: Engine) -> None:
    conv = store.create_conversation("orm", title="orm")
    with Session(raw) as session:
        session.add(Message(conversation_id=conv.id, role="user", content="ormword sessions"))
        session.commit()
    with raw.begin() as conn:  # and a raw INSERT of the seeds' columns
        conn.execute(
            text("INSERT INTO messages (conversation_id, role, content) VALUES (:c, 'user', :t)"),
            {"c": conv.id, "t": "rawword insert"},
        )
    assert [h.message.position for h in store.search("orm", "ormword").data if h.message] == [1]
    assert [h.message.position for h in store.search("orm", "rawword").data if h.message] == [2]
    _index_in_sync(raw)


def test_updates_and_deletes_keep_the_index_in_sync(store: Store, raw: Engine) -> None:
    def found(user: str, query: str) -> set[int]:
        return {h.message.position for h in store.search(user, query).data if h.message}

    conv = store.create_conversation("upd", title="first title")
    store.append_messages(
        "upd", conv.id, [{"role": "user", "content": f"keep{i} common"} for i in range(1, 6)]
    )
    with raw.begin() as conn:
        conn.execute(text("UPDATE messages SET content = 'changed' WHERE position = 1"))
    assert found("upd", "keep1") == set() and found("upd", "changed") == {1}
    store.update_conversation("upd", conv.id, title="second title")
    assert [h.kind for h in store.search("upd", "first").data] == []
    assert [h.kind for h in store.search("upd", "second").data] == ["title"]
    store.pop_message("upd", conv.id)
    store.delete_messages_after("upd", conv.id, 3)
    assert found("upd", "common") == {2, 3}
    _index_in_sync(raw)
    # Cascades: a conversation's delete, and a user's, remove their rows from the index.
    other = store.create_conversation("upd", messages=[{"role": "user", "content": "common"}])
    store.delete_conversation("upd", conv.id)
    assert {h.conversation_id for h in store.search("upd", "common").data} == {other.id}
    _index_in_sync(raw)
    store.delete_user("upd")
    assert store.search("upd", "common").data == []
    assert store.search("upd", "title").data == []
    _index_in_sync(raw)


def test_a_conversation_given_to_another_owner_is_found_by_the_new_one(
    store: Store, raw: Engine
) -> None:
    """A host's own UPDATE of an (empty) conversation's owner re-indexes its title under
    the new owner, and its later delete still removes what was indexed."""
    conv = store.create_conversation("ann", title="quokka trip")
    store.create_conversation("ben")  # ben exists in the users table
    with raw.begin() as conn:
        conn.execute(text("UPDATE conversations SET user_id = 'ben' WHERE id = :c"), {"c": conv.id})
    assert store.search("ann", "quokka").data == []
    assert [h.conversation_id for h in store.search("ben", "quokka").data] == [conv.id]
    store.delete_conversation("ben", conv.id)
    assert store.search("ben", "quokka").data == []
    _index_in_sync(raw)


def test_only_the_newest_candidates_are_ranked(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``SEARCH_CANDIDATES`` matches, the newest that many are ranked (best first)
    and paged to the end; older matches, and other users' newer ones, take no place."""
    from convostore import _ops

    monkeypatch.setattr(_ops, "SEARCH_CANDIDATES", 4)
    conv = store.create_conversation("fay", title="t")
    texts = ["gnu", "gnu gnu gnu", "gnu", "gnu gnu", "gnu words", "gnu gnu gnu gnu"]
    store.append_messages("fay", conv.id, [{"role": "user", "content": t} for t in texts])
    other = store.create_conversation("gus", title="t")  # newer, another user's
    store.append_messages("gus", other.id, [{"role": "user", "content": "gnu"}] * 5)
    seen, cursor = [], None
    while True:
        page = store.search("fay", "gnu", limit=3, cursor=cursor)
        seen += [h.message.position for h in page.data if h.message]
        if not page.has_more:
            break
        cursor = page.next_cursor
    # positions 3..6 are the newest four, ranked by matches: 4, 2, then the two single
    # mentions (in an order each database's rank decides)
    assert seen[:2] == [6, 4] and sorted(seen[2:]) == [3, 5]
    monkeypatch.setattr(_ops, "SEARCH_CANDIDATES", 1000)
    assert len(everything(store, "fay", "gnu").data) == 6


@pytest.mark.postgres
def test_searches_are_planned_for_their_words(pg_database: Callable[[str], str]) -> None:
    """PostgreSQL: a search is never a prepared statement (whose generic plan would
    serve a rare and a common word alike), and the connection's own setting is back
    after it."""
    engine = make_engine(pg_database("convostore_test_search_plans"))
    try:
        with Store(engine) as store:
            store.migrate()
            conv = store.create_conversation("hal", title="t")
            store.append_message("hal", conv.id, {"role": "user", "content": "kiwi"})
            with engine.connect() as conn:
                driver = conn.connection.driver_connection
                threshold = driver.prepare_threshold  # type: ignore[union-attr]
            for _ in range(12):  # well past psycopg's threshold (5)
                assert len(store.search("hal", "kiwi").data) == 1
                assert len(store.get_messages("hal", conv.id)) == 1
            with engine.connect() as conn:
                assert conn.connection.driver_connection.prepare_threshold == threshold  # type: ignore[union-attr]
                prepared = (
                    conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
                    .scalars()
                    .all()
                )
            assert prepared, "the other reads are prepared (the check can fail)"
            assert not [s for s in prepared if "ts_rank_cd" in s]
    finally:
        engine.dispose()
