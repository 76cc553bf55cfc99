"""Webhook triggers: the defaults a hook gets when its document leaves them out."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from amosflow.api.routes import hooks
from amosflow.triggers import WebhookTrigger, parse_trigger

HOOK = {"name": "orders", "type": "webhook", "flow": "greet", "secret": "hooks.orders"}


def test_a_hook_takes_200_per_second_with_a_burst_of_400_by_default() -> None:
    """A hook that names no limits is limited to what one node serves, not below it."""
    trigger = parse_trigger(HOOK)
    assert isinstance(trigger, WebhookTrigger)
    assert trigger.rate_per_s == 200.0
    assert trigger.burst == 400


def test_a_sender_can_use_its_hooks_whole_default_rate() -> None:
    """The per-address bucket before verification never cuts below a hook's default rate."""
    trigger = parse_trigger(HOOK)
    assert trigger.rate_per_s <= hooks.UNVERIFIED_RATE_PER_S
    assert trigger.burst <= hooks.UNVERIFIED_BURST


def test_a_hook_answers_accepted_by_default() -> None:
    """Without `respond`, a delivery is answered as soon as its run is started."""
    trigger = parse_trigger(HOOK)
    assert isinstance(trigger, WebhookTrigger)
    assert trigger.respond == "accepted"


@pytest.mark.parametrize("extra", [{"respond": "later"}, {"wait_s": 0}, {"wait_s": 121}])
def test_a_bad_respond_or_wait_is_refused(extra: dict[str, object]) -> None:
    """`respond` is accepted or result, and `wait_s` lies in (0, 120]."""
    with pytest.raises(ValidationError):
        parse_trigger({**HOOK, **extra})
