"""Property-based API test: schemathesis drives every operation from the app's own OpenAPI.

For each operation and each database, a bounded number of generated requests (valid and
invalid) with a valid token: the API never answers 5xx, and every response matches the
documented status codes, content types and schemas.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import text

from convostore import NotFoundError, Store
from convostore.config import Settings
from convostore.io import import_jsonl
from convostore.server import create_app
from convostore.server.auth import create_access_token
from tests.conftest import _create_pg_database, pg_database_url
from tests.server.conftest import SECRET

TOKEN = create_access_token("schemathesis", secret=SECRET, expires_in=24 * 3600)
PG_NAME = "convostore_schemathesis"

# schemathesis reads the schema at import time (its fixture loader does not work with the
# pytest in use), so each app points at a database that the module fixture below creates,
# migrates and seeds before the first generated request (apps connect lazily).
_DB_DIR = Path(tempfile.mkdtemp(prefix="convostore-schemathesis-"))
URLS = {"sqlite": f"sqlite:///{_DB_DIR / 'convostore.db'}", "postgresql": pg_database_url(PG_NAME)}
# Rate limits off: hundreds of generated requests by one user in seconds would be 429s
# (which test_ratelimit.py covers), not the operations under test.
NO_LIMITS = {"rate_limit_user_reads": "", "rate_limit_user_writes": ""}
SCHEMAS = {
    backend: schemathesis.openapi.from_asgi(
        "/openapi.json",
        create_app(Settings(database_url=url, jwt_secret_key=SECRET, **NO_LIMITS)),
    )
    for backend, url in URLS.items()
}
#: backend -> operation -> the statuses its generated requests got.
STATUSES: defaultdict[str, defaultdict[str, set[int]]] = defaultdict(lambda: defaultdict(set))


SEED = json.dumps(
    {
        "id": 1,
        "user_id": "schemathesis",
        "title": "seed",
        "created_at": "2025-01-01T00:00:00+00:00",
        "updated_at": "2025-01-01T00:00:00+00:00",
        "messages": [
            {
                "id": 1,
                "position": 1,
                "role": "user",
                "content": "hi",
                "created_at": "2025-01-01T00:00:00+00:00",
            },
            {
                # Message 2 (the streaming operations' path example) is streamed.
                "id": 2,
                "position": 2,
                "role": "assistant",
                "content": "part",
                "status": "interrupted",
                "created_at": "2025-01-01T00:00:01+00:00",
            },
        ],
    }
)
#: The operations that need message 2 to be streaming (the others need it ended: a begin
#: must be able to start a reply, and following an ended one returns at once).
WRITES_TO_STREAM = ("/deltas]", "/finish]", "/fail]", "/interrupt]")


@pytest.fixture(scope="module", autouse=True)
def _every_operation_succeeded_once() -> Iterator[None]:
    """After a whole run on a database: every operation succeeded at least once there, so
    the run exercised the store (and the token worked), not only the validation layer."""
    yield
    for backend, schema in SCHEMAS.items():
        seen = STATUSES[backend]
        if len(seen) < len(list(schema.get_all_operations())):
            continue  # only part of the module was selected: nothing to judge
        never = {op: codes for op, codes in seen.items() if not any(200 <= c < 300 for c in codes)}
        assert not never, f"{backend}: operations that never succeeded: {never}"


def _seed(backend: str, streaming: bool) -> None:
    """Conversation 1 and its message 2 (the operations' path examples) exist before each
    operation's run, even after the delete and erase operations removed them; message 2
    is streaming if ``streaming``, and nothing else streams in conversation 1."""
    with Store(URLS[backend]) as store:
        try:
            messages = store.get_messages("schemathesis", 1)
        except NotFoundError:
            # A generated PATCH may have given it a short retention: expired, it is gone
            # for readers but its row stays until a purge. Make room for the seed.
            with store.engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM conversations WHERE id = 1")
            messages = []
        if [m.id for m in messages[:2]] != [1, 2]:
            store.delete_user("schemathesis")
            report = import_jsonl(store.engine, [SEED])
            assert report.imported == 1, report
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE messages SET status = 'interrupted'"
                    " WHERE conversation_id = 1 AND status = 'streaming'"
                )
            )
            if streaming:
                conn.execute(
                    text(
                        "UPDATE messages SET status = 'streaming', stream_heartbeat_at = :now"
                        " WHERE id = 2"
                    ),
                    {"now": datetime.now(UTC)},
                )


@pytest.fixture(scope="module")
def sqlite_db() -> Iterator[str]:
    with Store(URLS["sqlite"]) as store:
        store.migrate()
    yield "sqlite"
    shutil.rmtree(_DB_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_db() -> str:
    assert _create_pg_database(PG_NAME) == URLS["postgresql"]
    with Store(URLS["postgresql"]) as store:
        store.migrate()
    return "postgresql"


class BearerToken:
    """A valid token on every generated request (schemathesis then knows auth is handled)."""

    def get(self, case: schemathesis.Case[Any], ctx: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case[Any], data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


for _schema in SCHEMAS.values():
    _schema.auth()(BearerToken)

GENERATION = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)


def _conforms(backend: str, case: schemathesis.Case[Any]) -> None:
    # Every check runs except "schema-valid data is accepted": the store's rules that JSON
    # Schema cannot say (non-blank content unless an assistant tool call; opaque cursors;
    # non-blank titles) legitimately answer 400 to some schema-valid requests.
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    STATUSES[backend][case.operation.label].add(response.status_code)


@SCHEMAS["sqlite"].parametrize()
@GENERATION
def test_api_conforms_to_its_schema_on_sqlite(case: schemathesis.Case[Any], sqlite_db: str) -> None:
    _conforms(sqlite_db, case)


@pytest.mark.postgres
@SCHEMAS["postgresql"].parametrize()
@GENERATION
def test_api_conforms_to_its_schema_on_postgresql(case: schemathesis.Case[Any], pg_db: str) -> None:
    _conforms(pg_db, case)


@pytest.fixture(autouse=True)
def _seeded(request: pytest.FixtureRequest) -> None:
    backend = "postgresql" if "postgresql" in request.node.name else "sqlite"
    request.getfixturevalue("pg_db" if backend == "postgresql" else "sqlite_db")
    _seed(backend, streaming=request.node.name.endswith(WRITES_TO_STREAM))
