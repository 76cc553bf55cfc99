"""`sql.query` on a real SQLite file and a real, throw-away PostgreSQL: params only.

The last test runs the action through the interpreter on the session's Temporal server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amosflow.config import EngineSettings
from amosflow.dsl import validate_flow
from amosflow.dsl.actions import validate_with
from amosflow.engine.activities import ActionContext, sql
from amosflow.engine.types import ActionCall
from amosflow.errors import ActionError
from amosflow.testing import run_flow
from tests.engine.flows import flow
from tests.support.postgres import PostgresServer

PASSWORD = "pw-canary-6b1d"  # in the PostgreSQL URL (trust auth ignores it): must never leak
INJECTION = "'; DROP TABLE people; --"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database on each backend (the PostgreSQL one with a password)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flows.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database().replace("postgres@", f"postgres:{PASSWORD}@")


@pytest.fixture
def connection(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The connection `main` in AMOS_SQL_CONNECTIONS, with a `people` table."""
    monkeypatch.setenv("AMOS_SQL_CONNECTIONS", json.dumps({"main": db_url}))
    run_action(
        connection="main",
        query="CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER)",
    )
    yield "main"
    sql.dispose_engines()


def run_action(**with_: Any) -> dict[str, Any]:
    """Run the sql.query implementation the way the activity wrapper does."""
    params = validate_with("sql.query", with_)
    call = ActionCall(
        action="sql.query",
        with_=with_,
        run_id="r",
        step_id="q",
        iteration="",
        idempotency_key="r/q/",
    )
    ctx = ActionContext(call=call, artifacts=None)  # type: ignore[arg-type]
    return asyncio.run(sql.query(ctx, params))


def fails(error_type: str, **with_: Any) -> ActionError:
    with pytest.raises(ActionError) as caught:
        run_action(**with_)
    assert caught.value.type == error_type, str(caught.value)
    return caught.value


def insert(name: str, age: int | None = None, person_id: int | None = None) -> dict[str, Any]:
    return run_action(
        connection="main",
        query="INSERT INTO people (id, name, age) VALUES (:id, :name, :age)",
        params={"id": person_id, "name": name, "age": age},
    )


def count() -> int:
    rows = run_action(connection="main", query="SELECT count(*) AS n FROM people")["rows"]
    return int(rows[0]["n"])


# -- queries ---------------------------------------------------------------------------------


def test_insert_returns_rowcount_and_select_binds_params(connection: str) -> None:
    """DML reports the rows it touched; a SELECT returns columns and rows as objects."""
    assert insert("Ada", 36, 1) == {"columns": [], "rows": [], "rowcount": 1, "truncated": False}
    insert("Grace", 45, 2)
    insert("Alan", 41, 3)
    output = run_action(
        connection="main",
        query="SELECT id, name, age FROM people WHERE age > :min_age ORDER BY id",
        params={"min_age": 40},
    )
    assert output == {
        "columns": ["id", "name", "age"],
        "rows": [{"id": 2, "name": "Grace", "age": 45}, {"id": 3, "name": "Alan", "age": 41}],
        "rowcount": 2,
        "truncated": False,
    }
    updated = run_action(
        connection="main",
        query="UPDATE people SET age = age + 1 WHERE age < :limit",
        params={"limit": 50},
    )
    assert updated["rowcount"] == 3


def test_an_injection_attempt_passed_as_a_param_stays_data(connection: str) -> None:
    """A hostile string is stored verbatim, matched verbatim, and the table survives."""
    insert(INJECTION, person_id=7)
    assert count() == 1
    stored = run_action(
        connection="main", query="SELECT name FROM people WHERE id = :id", params={"id": 7}
    )
    assert stored["rows"] == [{"name": INJECTION}]
    found = run_action(
        connection="main",
        query="SELECT id FROM people WHERE name = :name",
        params={"name": INJECTION},
    )
    assert found["rows"] == [{"id": 7}]
    tautology = run_action(
        connection="main",
        query="SELECT id FROM people WHERE name = :name",
        params={"name": "x' OR '1'='1"},
    )
    assert tautology["rows"] == []
    assert count() == 1


def test_max_rows_truncates(connection: str) -> None:
    """At most max_rows rows come back; truncated says that more were left."""
    for n in range(5):
        insert(f"p{n}", n, n + 1)
    query = "SELECT id FROM people ORDER BY id"
    cut = run_action(connection="main", query=query, max_rows=3)
    assert cut["rows"] == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert cut["rowcount"] == 3
    assert cut["truncated"] is True
    whole = run_action(connection="main", query=query, max_rows=5)
    assert whole["truncated"] is False
    assert len(whole["rows"]) == 5


def test_a_huge_result_is_not_computed_to_return_a_few_rows(connection: str, db_url: str) -> None:
    """Rows are fetched as needed (a server-side cursor on PostgreSQL), not all of them."""
    if db_url.startswith("sqlite"):
        started = time.monotonic()
        series = (
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 100000000)"
            " SELECT n FROM s"
        )
        output = run_action(connection="main", query=series, max_rows=2, timeout="60s")
        assert output["rows"] == [{"n": 1}, {"n": 2}]
        assert output["truncated"] is True
        assert time.monotonic() - started < 10
        return
    # nextval() runs once per row computed, and a sequence is not rolled back: it counts them.
    run_action(connection="main", query="CREATE SEQUENCE computed")
    output = run_action(
        connection="main",
        query="SELECT nextval('computed') AS n FROM generate_series(1, 200000)",
        max_rows=2,
    )
    assert output["rows"] == [{"n": 1}, {"n": 2}]
    assert output["truncated"] is True
    last = run_action(connection="main", query="SELECT last_value FROM computed")["rows"]
    assert last[0]["last_value"] <= 1000  # the driver's buffer at most, never 200000
    made = run_action(connection="main", query="SELECT :n AS n INTO copied", params={"n": 1})
    assert made["rowcount"] == 1  # SELECT … INTO makes a table, so it is not run as a cursor
    assert run_action(connection="main", query="SELECT n FROM copied")["rows"] == [{"n": 1}]


def test_a_failed_statement_rolls_back_and_hides_the_url(connection: str, db_url: str) -> None:
    """A constraint violation is a non-retryable SqlError; nothing of the URL is in it."""
    insert("Ada", 36, 1)
    err = fails(
        "SqlError",
        connection="main",
        query="INSERT INTO people (id, name) VALUES (:id, :name)",
        params={"id": 1, "name": "duplicate"},
    )
    assert not err.retryable
    assert str(err).startswith("sql.query on 'main' failed: ")
    assert PASSWORD not in str(err)
    assert db_url not in str(err)
    assert "[SQL:" not in str(err)  # SQLAlchemy's rendering (statement and values) is left out
    assert count() == 1
    missing = fails(
        "SqlError", connection="main", query="SELECT * FROM nope WHERE x = :x", params={"x": 1}
    )
    assert "nope" in str(missing)
    unbound = fails("SqlError", connection="main", query="SELECT :a AS a")
    assert "bind parameter 'a'" in str(unbound)
    assert "sqlalche.me" not in str(unbound)


def test_a_statement_past_its_timeout_is_stopped(connection: str, db_url: str) -> None:
    """The timeout stops the statement (retryable SqlTimeout); the pooled connection is fine."""
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        if db_url.startswith("sqlite")
        else "SELECT pg_sleep(30)"
    )
    err = fails("SqlTimeout", connection="main", query=slow, timeout="1s")
    assert err.retryable
    assert "1s" in str(err)
    insert("after", 1, 1)
    assert count() == 1


def test_values_become_json(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decimals as exact strings, times as ISO 8601, bytes as base64, intervals as seconds."""
    monkeypatch.setenv(
        "AMOS_SQL_CONNECTIONS", json.dumps({"pg": postgres_server.create_database()})
    )
    try:
        output = run_action(
            connection="pg",
            query=(
                "SELECT 12.50::numeric AS price, DATE '2024-01-02' AS day,"
                " TIMESTAMPTZ '2024-01-02 03:04:05+00' AS at, '\\x0102ff'::bytea AS raw,"
                " interval '90 seconds' AS wait, 'NaN'::float8 AS nan, ARRAY[1, 2] AS list,"
                " '{\"a\": [1, null]}'::jsonb AS doc,"
                " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS id, true AS flag, NULL AS nothing"
            ),
        )
    finally:
        sql.dispose_engines()
    assert output["rows"] == [
        {
            "price": "12.50",
            "day": "2024-01-02",
            "at": "2024-01-02T03:04:05+00:00",
            "raw": "AQL/",
            "wait": 90.0,
            "nan": "NaN",
            "list": [1, 2],
            "doc": {"a": [1, None]},
            "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "flag": True,
            "nothing": None,
        }
    ]


# -- connections -----------------------------------------------------------------------------


def test_unknown_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown name lists the configured names; no setting says which to set."""
    monkeypatch.setenv(
        "AMOS_SQL_CONNECTIONS", json.dumps({"main": "sqlite://", "erp": "sqlite://"})
    )
    err = fails("SqlConnectionUnknown", connection="crm", query="SELECT 1")
    assert not err.retryable
    assert "unknown SQL connection 'crm'; configured: erp, main" in str(err)
    monkeypatch.delenv("AMOS_SQL_CONNECTIONS")
    assert "AMOS_SQL_CONNECTIONS" in str(
        fails("SqlConnectionUnknown", connection="crm", query="SELECT 1")
    )
    monkeypatch.setenv("AMOS_SQL_CONNECTIONS", "{not json")
    assert "AMOS_SQL_CONNECTIONS" in str(
        fails("SqlConnectionUnknown", connection="crm", query="SELECT 1")
    )


def test_an_unreachable_database_is_retryable_and_hides_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connection refused: retryable SqlError; neither URL nor password in the message."""
    url = f"postgresql+psycopg://amos:{PASSWORD}@127.0.0.1:9/nothing"
    monkeypatch.setenv("AMOS_SQL_CONNECTIONS", json.dumps({"down": url}))
    try:
        err = fails("SqlError", connection="down", query="SELECT 1")
    finally:
        sql.dispose_engines()
    assert err.retryable
    assert PASSWORD not in str(err)
    assert url not in str(err)


def test_a_bad_url_is_reported_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMOS_SQL_CONNECTIONS", json.dumps({"bad": f"nosuchdb://u:{PASSWORD}@h/x"}))
    err = fails("SqlError", connection="bad", query="SELECT 1")
    assert not err.retryable
    assert PASSWORD not in str(err)


# -- validation ------------------------------------------------------------------------------


def _query_step(query: str, **with_: Any) -> dict[str, Any]:
    return {
        "id": "q",
        "type": "action",
        "action": "sql.query",
        "with": {"connection": "main", "query": query, **with_},
        "retry": {"max_attempts": 2, "backoff": "50ms"},
    }


def test_an_expression_in_the_query_is_refused_at_validation() -> None:
    """`${` in the query text is refused at its pointer, which says to use params instead."""
    doc = flow(_query_step("SELECT * FROM people WHERE name = '${inputs.name}'"))
    problems = validate_flow(doc)
    assert [p.pointer for p in problems] == ["/steps/0/with/query"]
    message = problems[0].message
    assert "SQL injection" in message
    assert "with.params" in message
    assert ":id" in message
    secret = flow(_query_step("SELECT '${secrets.db.key}'"), requires={"secrets": ["db.key"]})
    assert [p.pointer for p in validate_flow(secret)] == ["/steps/0/with/query"]
    fine = flow(
        _query_step(
            "SELECT * FROM people WHERE name = :name AND note = '\\${literal}'",
            params={"name": "${inputs.name}"},
        )
    )
    assert validate_flow(fine) == []


def test_with_limits_are_validated() -> None:
    """max_rows is 1..100000, param names are identifiers, the timeout at most 1h."""
    doc = flow(
        _query_step("SELECT 1", max_rows=100_001, params={"bad-name": 1}, timeout="2h"),
    )
    pointers = sorted(p.pointer for p in validate_flow(doc))
    assert pointers == [
        "/steps/0/with/max_rows",
        "/steps/0/with/params/bad-name",
        "/steps/0/with/timeout",
    ]


# -- through the engine ----------------------------------------------------------------------


@pytest.mark.temporal
def test_flow_runs_sql_on_temporal(
    settings: EngineSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flow creates a table, inserts its inputs as params and selects them back."""
    monkeypatch.setenv(
        "AMOS_SQL_CONNECTIONS", json.dumps({"main": f"sqlite:///{tmp_path / 'flow.db'}"})
    )
    doc = flow(
        _query_step("CREATE TABLE people (name TEXT NOT NULL, age INTEGER)"),
        {
            "id": "add",
            "type": "foreach",
            "items": "${inputs.people}",
            "as": "person",
            "steps": [
                {
                    "id": "ins",
                    "type": "action",
                    "action": "sql.query",
                    "with": {
                        "connection": "main",
                        "query": "INSERT INTO people (name, age) VALUES (:name, :age)",
                        "params": {"name": "${person.name}", "age": "${person.age}"},
                    },
                }
            ],
        },
        {
            "id": "sel",
            "type": "action",
            "action": "sql.query",
            "with": {
                "connection": "main",
                "query": "SELECT name, age FROM people WHERE age >= :min ORDER BY name",
                "params": {"min": "${inputs.min}"},
            },
        },
        outputs={
            "inserted": "${steps.add.output.map(r, r.rowcount)}",
            "rows": "${steps.sel.output.rows}",
        },
        requires={"capabilities": ["sql"]},
    )
    people = [{"name": INJECTION, "age": 30}, {"name": "Ada", "age": 36}, {"name": "Kid", "age": 9}]
    try:
        result = asyncio.run(run_flow(settings, doc, {"people": people, "min": 18}))
    finally:
        sql.dispose_engines()
    assert result["status"] == "completed", result["error"]
    assert result["output"] == {
        "inserted": [1, 1, 1],
        "rows": [{"name": INJECTION, "age": 30}, {"name": "Ada", "age": 36}],
    }
