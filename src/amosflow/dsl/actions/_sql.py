r"""The ``sql.query`` action: one parameterised statement on a named connection.

Values enter a query through ``params`` only, as bind parameters: the query text itself can
hold no ``${…}`` expression, since text built from data is how SQL injection happens
(decision 0027).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from amosflow.dsl import expr
from amosflow.dsl._models import RENDERED
from amosflow.dsl.actions._registry import (
    ActionSpec,
    Duration,
    Expr,
    WithModel,
    bounded_timeout,
    register,
)

CONNECTION_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$"
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
MAX_QUERY_CHARS = 1024 * 1024
DEFAULT_MAX_ROWS = 1000
MAX_ROWS_CAP = 100_000

ConnectionName = Annotated[str, StringConstraints(pattern=CONNECTION_NAME_PATTERN)]
ParamName = Annotated[str, StringConstraints(pattern=PARAM_NAME_PATTERN)]
MaxRows = Annotated[int, Field(ge=1, le=MAX_ROWS_CAP)]

QUERY_EXPRESSION_MESSAGE = (
    "the query cannot contain ${…} expressions: text built from values allows SQL injection."
    " Write a named bind parameter in the query (WHERE id = :id) and give its value in"
    ' with.params ({"id": "${inputs.id}"}); write \\${ for a literal ${'
)


class SqlQueryWith(WithModel):
    r"""``with`` of ``sql.query``: one statement with named bind parameters.

    ``connection`` names an entry of the runner's ``AMOS_SQL_CONNECTIONS``; ``query`` is one
    SQL statement whose values are bind parameters (``:name``, ``\:`` for a literal colon)
    given in ``params``; it runs in a transaction that commits when it succeeds and rolls
    back when it fails. SQLite, and PostgreSQL whenever parameters are bound, refuse a query
    of several statements. ``timeout`` bounds the statement (enforced by the server on
    PostgreSQL, by SQLite's progress handler on SQLite; on other databases only the step's
    own timeout applies).

    Output: ``{"columns": [...], "rows": [{column: value}], "rowcount": n, "truncated":
    bool}``. For a statement returning rows, ``rows`` holds at most ``max_rows`` of them
    (``truncated`` tells whether more were left) and ``rowcount`` is how many are returned;
    otherwise ``columns`` and ``rows`` are empty and ``rowcount`` is the rows affected.
    Values become JSON: numbers, strings, booleans and null as they are; decimals as their
    exact decimal string; dates, times and datetimes as ISO 8601 strings; intervals as
    seconds; bytes as base64 strings; UUIDs and other types as their string; non-finite
    floats as "NaN", "Infinity", "-Infinity"; arrays and JSON values recursively.
    Failures: ``SqlConnectionUnknown``, ``SqlTimeout`` (retryable), ``SqlError``
    (retryable when the database says a retry may help: connection lost, deadlock,
    serialization failure, lock not available).
    """

    connection: Expr[ConnectionName]
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    params: Expr[dict[ParamName, Any]] = Field(default_factory=dict)
    max_rows: Expr[MaxRows] = DEFAULT_MAX_ROWS
    timeout: Duration = "30s"

    @field_validator("query")
    @classmethod
    def _no_interpolation(cls, value: str, info: ValidationInfo) -> str:
        rendered = isinstance(info.context, dict) and bool(info.context.get(RENDERED))
        if not rendered and expr.has_expression(value):
            raise ValueError(QUERY_EXPRESSION_MESSAGE)
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_bounds(cls, value: str, info: ValidationInfo) -> str:
        return bounded_timeout(value, info, "1h")


register(
    ActionSpec(
        name="sql.query",
        capability="sql",
        with_model=SqlQueryWith,
        description=(
            "Runs one parameterised SQL statement (values through with.params only) on a"
            " connection named in the runner's AMOS_SQL_CONNECTIONS; returns columns, rows,"
            " rowcount and truncated."
        ),
    )
)
