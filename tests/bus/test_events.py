"""CloudEvents 1.0 building and the NATS subjects events travel on."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from amosflow.bus import cloud_event, parse_event, subject_for
from amosflow.bus import events as ev

REQUIRED = {"specversion", "id", "source", "type"}


def test_cloud_event_is_a_valid_structured_cloudevent() -> None:
    """The object carries every required attribute plus subject, time and a JSON data type."""
    event = cloud_event(ev.RUN_STARTED, source="/amos/node", subject="r1", data={"run_id": "r1"})
    assert event.keys() >= REQUIRED
    assert event["specversion"] == "1.0"
    assert event["type"] == "io.amosflow.run.started"
    assert event["subject"] == "r1"
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {"run_id": "r1"}
    assert datetime.fromisoformat(event["time"]).tzinfo is not None


def test_cloud_event_round_trips_through_the_cloudevents_library() -> None:
    """The JSON text reads back with the library's own JSON format into the same attributes."""
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = cloud_event(
        ev.STEP_FAILED, source="/amos/node", subject="r1", data={"step": "a"}, id="e-1", time=when
    )
    read = JSONFormat().read(CloudEvent, json.dumps(event))
    assert read.get_id() == "e-1"
    assert read.get_specversion() == "1.0"
    assert read.get_type() == ev.STEP_FAILED
    assert read.get_time() == when
    assert read.get_data() == {"step": "a"}
    assert event["time"] == "2025-01-02T03:04:05Z"
    assert parse_event(json.dumps(event).encode()).get_attributes() == read.get_attributes()


def test_cloud_event_refuses_an_invalid_source() -> None:
    """The library's validation runs: an empty source is not a CloudEvent."""
    with pytest.raises(CloudEventValidationError):
        cloud_event(ev.RUN_STARTED, source="", subject="r1", data={})


def test_each_event_gets_a_fresh_id_unless_given() -> None:
    """Ids are unique by default and stable when the caller passes one (for de-duplication)."""
    first = cloud_event(ev.RUN_STARTED, source="/s", subject="r", data={})
    second = cloud_event(ev.RUN_STARTED, source="/s", subject="r", data={})
    assert first["id"] != second["id"]
    assert cloud_event(ev.RUN_STARTED, source="/s", subject="r", data={}, id="x")["id"] == "x"


@pytest.mark.parametrize(
    ("type_", "key", "subject"),
    [
        (ev.RUN_STARTED, "r1", "amos.run.r1.started"),
        (ev.RUN_COMPLETED, "r1", "amos.run.r1.completed"),
        (ev.RUN_FAILED, "r1", "amos.run.r1.failed"),
        (ev.STEP_STARTED, "r1", "amos.run.r1.step.started"),
        (ev.STEP_COMPLETED, "r1", "amos.run.r1.step.completed"),
        (ev.STEP_FAILED, "r1", "amos.run.r1.step.failed"),
        (ev.TRIGGER_FIRED, "nightly", "amos.trigger.nightly.fired"),
    ],
)
def test_subject_for_each_event_type(type_: str, key: str, subject: str) -> None:
    """Every event type maps to its documented subject."""
    assert subject_for(type_, key) == subject


def test_subject_tokens_are_sanitised() -> None:
    """Dots, wildcards and whitespace in ids cannot split or widen a subject."""
    subject = subject_for(ev.RUN_STARTED, "a.b *>\tc%")
    token = subject.split(".")[2]
    assert subject.count(".") == 3
    assert not {".", "*", ">", " ", "\t"} & set(token)
    assert token == "a%2Eb%20%2A%3E%09c%25"


def test_sanitising_keeps_distinct_ids_distinct() -> None:
    """Two ids that differ only in an unsafe character land on different subjects."""
    keys = ["a.b", "a_b", "a%2Eb", "", "_"]
    subjects = {subject_for(ev.RUN_STARTED, key) for key in keys}
    assert len(subjects) == len(keys)


def test_subject_for_refuses_unknown_types() -> None:
    """A type outside the catalogue of events is a programming error."""
    with pytest.raises(ValueError, match="unknown event type"):
        subject_for("io.amosflow.run.paused", "r1")
