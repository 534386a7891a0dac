"""Property-based API test: schemathesis drives every operation from the app's own OpenAPI.

For each operation, a bounded number of generated requests (valid and invalid) with a
valid token: the API never answers 5xx, and every response matches the documented
status codes, content types and schemas.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from convostore import NotFoundError, Store
from convostore.config import Settings
from convostore.io import import_jsonl
from convostore.server import create_app
from convostore.server.auth import create_access_token
from tests.server.conftest import SECRET

TOKEN = create_access_token("schemathesis", secret=SECRET, expires_in=24 * 3600)


# schemathesis reads the schema at import time (its fixture loader does not work with the
# pytest in use), so the app points at a temporary SQLite file that the module fixture below
# migrates and seeds before the first generated request.
_DB_DIR = Path(tempfile.mkdtemp(prefix="convostore-schemathesis-"))
DB_URL = f"sqlite:///{_DB_DIR / 'convostore.db'}"
app = create_app(Settings(database_url=DB_URL, jwt_secret_key=SECRET))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


SEED = json.dumps(
    {
        "id": 1,
        "user_id": "schemathesis",
        "title": "seed",
        "created_at": "2025-01-01T00:00:00+00:00",
        "updated_at": "2025-01-01T00:00:00+00:00",
        "messages": [
            {
                "position": 1,
                "role": "user",
                "content": "hi",
                "created_at": "2025-01-01T00:00:00+00:00",
            }
        ],
    }
)


@pytest.fixture(scope="module")
def _database() -> Iterator[None]:
    with Store(DB_URL) as store:
        store.migrate()
    yield
    shutil.rmtree(_DB_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed(_database: None) -> None:
    """Conversation 1 (the operations' path example) exists before each operation's run,
    even after the delete and erase operations removed it."""
    with Store(DB_URL) as store:
        try:
            store.get_conversation("schemathesis", 1)
        except NotFoundError:
            report = import_jsonl(store.engine, [SEED])
            assert report.imported == 1, report


STATUSES: defaultdict[str, set[int]] = defaultdict(set)


@schema.auth()
class BearerToken:
    """A valid token on every generated request (schemathesis then knows auth is handled)."""

    def get(self, case: schemathesis.Case[Any], ctx: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case[Any], data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    # Every check runs except "schema-valid data is accepted": the store's rules that JSON
    # Schema cannot say (non-blank content unless an assistant tool call; opaque cursors;
    # non-blank titles) legitimately answer 422 to some schema-valid requests.
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    STATUSES[case.operation.label].add(response.status_code)


def test_generated_requests_reached_the_store() -> None:
    """Runs after the generated tests: the token worked and every operation succeeded at
    least once (so the run exercised the store, not only the validation layer)."""
    assert len(STATUSES) == len(list(schema.get_all_operations()))
    for operation, statuses in STATUSES.items():
        assert any(200 <= s < 300 for s in statuses), (operation, statuses)
