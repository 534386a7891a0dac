"""Model-based property test: random operations by several users against an in-memory model.

Each hypothesis example drives the sync store on a real database (both backends) with a
fresh set of user ids (a unique prefix per example, erased again in ``teardown``), so the
examples never see each other's data. After every step the touched conversation must
equal the model: no operation returns or changes another user's data, positions stay
gapless (1..n) and ordered, ``message_count`` matches, and another user's conversation
raises the same ``NotFoundError`` as a missing one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from convostore import ConflictError, NotFoundError, Store, ValidationError
from convostore.schemas import Order

USERS = ("ann", "bob", "cid")
KEYS = ("k1", "k2", "k3")

Stored = tuple[str, str, str | None]  # role, content, key


@dataclass
class ModelConversation:
    owner: str
    title: str | None
    messages: list[Stored] = field(default_factory=list)
    alive: bool = True


# Never blank by construction (filters would waste examples): padding around a visible core.
_pad = st.text(alphabet=" \n", max_size=2)
texts = st.builds(
    lambda a, core, b: a + core + b, _pad, st.text(alphabet="abé😀", min_size=1, max_size=8), _pad
)
messages = st.builds(
    lambda role, content, key: {"role": role, "content": content, **({"key": key} if key else {})},
    st.sampled_from(["user", "assistant", "system"]),
    texts,
    st.none() | st.sampled_from(KEYS),
)
#: Who acts on a conversation: mostly its owner (None), sometimes any user.
actors = st.one_of(st.none(), st.none(), st.sampled_from(USERS))
titles = st.none() | st.builds(
    lambda a, core: a + core + a, st.text(" ", max_size=2), st.text("xyz", min_size=1, max_size=8)
)


def stored(message: dict[str, Any]) -> Stored:
    return (message["role"], message["content"], message.get("key"))


class StoreMachine(RuleBasedStateMachine):
    """The store versus a dict of conversations; ``store`` is set per backend."""

    store: Store
    conversations = Bundle("conversations")

    def __init__(self) -> None:
        super().__init__()
        self.prefix = uuid.uuid4().hex[:10]
        self.model: dict[int, ModelConversation] = {}
        self.registered: set[str] = set()

    def uid(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def teardown(self) -> None:
        for cid in self.model:  # every message of every conversation, not only the touched
            self.check(cid)
        for name in USERS:
            self.store.delete_user(self.uid(name))

    # ------------------------------------------------------------------ helpers

    def alive(self) -> int:
        return sum(c.alive for c in self.model.values())

    def who(self, cid: int, actor: str | None) -> str:
        return self.model[cid].owner if actor is None else actor

    def owns(self, actor: str, cid: int) -> bool:
        conv = self.model[cid]
        return conv.alive and conv.owner == actor

    def expect_not_found(self, cid: int, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Another user's or a deleted conversation: not found, and nothing changes."""
        before = self.snapshot(cid)
        with pytest.raises(NotFoundError) as err:
            fn(*args, **kwargs)
        assert str(err.value) == f"conversation {cid} not found"
        assert self.snapshot(cid) == before

    def expect_conflict(self, cid: int, fn: Any, *args: Any) -> None:
        """A stored key reused for another message: a conflict, and nothing changes."""
        before = self.snapshot(cid)
        with pytest.raises(ConflictError):
            fn(*args)
        assert self.snapshot(cid) == before

    def snapshot(self, cid: int) -> Any:
        conv = self.model[cid]
        if not conv.alive:
            return None
        owner = self.uid(conv.owner)
        return self.store.get_conversation(owner, cid), self.store.get_messages(owner, cid)

    def check(self, cid: int) -> None:
        conv = self.model[cid]
        if not conv.alive:
            for name in USERS:
                with pytest.raises(NotFoundError):
                    self.store.get_messages(self.uid(name), cid)
            return
        owner = self.uid(conv.owner)
        got = self.store.get_messages(owner, cid)
        assert [(m.role, m.content, m.key) for m in got] == conv.messages
        assert [m.position for m in got] == list(range(1, len(got) + 1))
        assert all(m.user_id == owner and m.conversation_id == cid for m in got)
        meta = self.store.get_conversation(owner, cid)
        assert meta.message_count == len(conv.messages)
        assert meta.title == conv.title and meta.user_id == owner

    def auto_title(self, conv: ModelConversation, new: list[Stored]) -> None:
        if conv.title is None:
            first = next((c for r, c, _ in new if r == "user"), None)
            if first is not None:
                conv.title = next(ln.strip() for ln in first.splitlines() if ln.strip())

    # -------------------------------------------------------------------- rules

    @initialize(
        target=conversations,
        owner=st.sampled_from(USERS),
        initial=st.lists(
            messages, min_size=2, max_size=8, unique_by=lambda m: m.get("key") or id(m)
        ),
    )
    def start(self, owner: str, initial: list[dict[str, Any]]) -> int:
        """Every example starts with a conversation that has history to pop, cut and page."""
        return self.new_conversation(owner, None, initial)

    @initialize(target=conversations, initial=st.lists(messages, min_size=1, max_size=8))
    def start_other(self, initial: list[dict[str, Any]]) -> int:
        unique = list({m.get("key") or id(m): m for m in initial}.values())
        return self.new_conversation("bob", "bob's", unique)

    @rule(
        target=conversations,
        owner=st.sampled_from(USERS),
        title=titles,
        initial=st.lists(messages, max_size=5, unique_by=lambda m: m.get("key") or id(m)),
    )
    def create(self, owner: str, title: str | None, initial: list[dict[str, Any]]) -> int:
        return self.new_conversation(owner, title, initial)

    def new_conversation(self, owner: str, title: str | None, initial: list[dict[str, Any]]) -> int:
        conv = self.store.create_conversation(self.uid(owner), title=title, messages=initial)
        model = ModelConversation(owner, title.strip() if title else None)
        model.messages = [stored(m) for m in initial]
        self.auto_title(model, model.messages)
        self.model[conv.id] = model
        self.registered.add(owner)
        self.check(conv.id)
        return conv.id

    @rule(cid=conversations, actor=actors, message=messages)
    def append_one(self, cid: int, actor: str | None, message: dict[str, Any]) -> None:
        actor = self.who(cid, actor)
        if not self.owns(actor, cid):
            self.expect_not_found(cid, self.store.append_message, self.uid(actor), cid, message)
            return
        conv = self.model[cid]
        key = message.get("key")
        known = [i for i, m in enumerate(conv.messages) if key and m[2] == key]
        if known and conv.messages[known[0]] != stored(message):
            self.expect_conflict(cid, self.store.append_message, self.uid(actor), cid, message)
            return
        got = self.store.append_message(self.uid(actor), cid, message)
        if known:
            assert got.position == known[0] + 1 and got.key == key
        else:
            conv.messages.append(stored(message))
            self.auto_title(conv, [stored(message)])
            assert got.position == len(conv.messages)
        self.check(cid)

    @rule(cid=conversations, actor=actors, batch=st.lists(messages, max_size=5))
    def append_many(self, cid: int, actor: str | None, batch: list[dict[str, Any]]) -> None:
        actor = self.who(cid, actor)
        keys = [m["key"] for m in batch if "key" in m]
        if len(keys) != len(set(keys)):  # input is validated before anything is looked up
            before = self.snapshot(cid)
            with pytest.raises(ValidationError):
                self.store.append_messages(self.uid(actor), cid, batch)
            assert self.snapshot(cid) == before
            return
        if not self.owns(actor, cid):
            self.expect_not_found(cid, self.store.append_messages, self.uid(actor), cid, batch)
            return
        conv = self.model[cid]
        stored_keys = {m[2]: i for i, m in enumerate(conv.messages) if m[2]}
        if any(
            m.get("key") in stored_keys and stored(m) != conv.messages[stored_keys[m["key"]]]
            for m in batch
        ):
            self.expect_conflict(cid, self.store.append_messages, self.uid(actor), cid, batch)
            return
        got = self.store.append_messages(self.uid(actor), cid, batch)
        new = [stored(m) for m in batch if m.get("key") not in stored_keys]
        conv.messages += new
        self.auto_title(conv, new)
        expected_positions = []
        nxt = len(conv.messages) - len(new)
        for m in batch:
            if m.get("key") in stored_keys:
                expected_positions.append(stored_keys[m["key"]] + 1)
            else:
                nxt += 1
                expected_positions.append(nxt)
        assert [m.position for m in got] == expected_positions
        self.check(cid)

    @rule(cid=conversations, actor=actors)
    def pop(self, cid: int, actor: str | None) -> None:
        actor = self.who(cid, actor)
        if not self.owns(actor, cid):
            self.expect_not_found(cid, self.store.pop_message, self.uid(actor), cid)
            return
        conv = self.model[cid]
        got = self.store.pop_message(self.uid(actor), cid)
        if conv.messages:
            assert got is not None and (got.role, got.content, got.key) == conv.messages.pop()
        else:
            assert got is None
        self.check(cid)

    @rule(cid=conversations, actor=actors, back=st.integers(-2, 4))
    def delete_after(self, cid: int, actor: str | None, back: int) -> None:
        """Keep all but the last ``back`` messages (negative: a position past the end)."""
        actor = self.who(cid, actor)
        keep = max(0, len(self.model[cid].messages) - back)
        if not self.owns(actor, cid):
            self.expect_not_found(cid, self.store.delete_messages_after, self.uid(actor), cid, keep)
            return
        conv = self.model[cid]
        got = self.store.delete_messages_after(self.uid(actor), cid, keep)
        assert [(m.role, m.content, m.key) for m in got] == conv.messages[keep:]
        assert [m.position for m in got] == list(range(keep + 1, keep + 1 + len(got)))
        del conv.messages[keep:]
        self.check(cid)

    @rule(cid=conversations, actor=actors, title=titles)
    def update_title(self, cid: int, actor: str | None, title: str | None) -> None:
        actor = self.who(cid, actor)
        if not self.owns(actor, cid):
            self.expect_not_found(
                cid, self.store.update_conversation, self.uid(actor), cid, title=title
            )
            return
        got = self.store.update_conversation(self.uid(actor), cid, title=title)
        self.model[cid].title = title.strip() if title else None
        assert got.title == self.model[cid].title
        self.check(cid)

    # Destructive rules only while there is plenty left, so most steps act on real history
    # (hypothesis favours rules with few arguments, which would otherwise empty the state).
    @precondition(lambda self: self.alive() >= 3)
    @rule(cid=conversations, actor=actors)
    def delete_conversation(self, cid: int, actor: str | None) -> None:
        actor = self.who(cid, actor)
        if not self.owns(actor, cid):
            self.expect_not_found(cid, self.store.delete_conversation, self.uid(actor), cid)
            return
        self.store.delete_conversation(self.uid(actor), cid)
        self.model[cid].alive = False
        self.check(cid)

    @precondition(lambda self: self.alive() >= 4)
    @rule(name=st.sampled_from(USERS))
    def delete_user(self, name: str) -> None:
        assert self.store.delete_user(self.uid(name)) is (name in self.registered)
        self.registered.discard(name)
        for cid, conv in self.model.items():
            if conv.owner == name and conv.alive:
                conv.alive = False
                self.check(cid)
        assert self.store.list_conversations(self.uid(name)).data == []

    @rule(name=st.sampled_from(USERS), limit=st.integers(1, 4))
    def list_conversations(self, name: str, limit: int) -> None:
        seen = []
        cursor = None
        for _ in range(len(self.model) + 1):  # bounded: a repeating cursor fails, not hangs
            page = self.store.list_conversations(self.uid(name), limit=limit, cursor=cursor)
            seen += page.data
            if not page.has_more:
                break
            cursor = page.next_cursor
        else:
            pytest.fail("paging did not end")
        mine = {cid: c for cid, c in self.model.items() if c.alive and c.owner == name}
        assert sorted(c.id for c in seen) == sorted(mine)
        assert seen == sorted(seen, key=lambda c: (c.updated_at, c.id), reverse=True)
        for c in seen:
            assert c.user_id == self.uid(name)
            assert c.message_count == len(mine[c.id].messages) and c.title == mine[c.id].title

    @rule(
        cid=conversations,
        actor=actors,
        limit=st.integers(1, 4),
        descending=st.booleans(),
    )
    def list_messages(self, cid: int, actor: str | None, limit: int, descending: bool) -> None:
        actor = self.who(cid, actor)
        order: Order = "desc" if descending else "asc"
        if not self.owns(actor, cid):
            self.expect_not_found(cid, self.store.list_messages, self.uid(actor), cid, order=order)
            return
        seen = []
        cursor: int | None = None
        for _ in range(
            len(self.model[cid].messages) + 1
        ):  # bounded: a repeating cursor fails, not hangs
            kwargs = {"before" if descending else "after": cursor}
            page = self.store.list_messages(
                self.uid(actor), cid, limit=limit, order=order, **kwargs
            )
            seen += page.data
            if not page.has_more:
                break
            assert page.next_cursor is not None
            cursor = int(page.next_cursor)
        else:
            pytest.fail("paging did not end")
        expected = self.model[cid].messages
        assert [(m.role, m.content, m.key) for m in seen] == (
            expected[::-1] if descending else expected
        )

    @invariant()
    def every_users_conversations_match(self) -> None:
        """Cheap whole-state check after every step: nobody else's counters or titles moved."""
        for name in USERS:
            listed = self.store.list_conversations(self.uid(name), limit=100).data
            alive = {cid: c for cid, c in self.model.items() if c.owner == name and c.alive}
            assert {c.id: (c.message_count, c.title) for c in listed} == {
                cid: (len(c.messages), c.title) for cid, c in alive.items()
            }


def test_store_matches_the_model(store: Store) -> None:
    machine = type("Machine", (StoreMachine,), {"store": store})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=40,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
