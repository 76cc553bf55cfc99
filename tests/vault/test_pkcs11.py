"""The SoftHSM2 provider keeps its KEKs inside the token, sensitive and never extractable."""

from __future__ import annotations

import pkcs11
from pkcs11 import Attribute, ObjectClass

from tests.vault.conftest import PIN, TOKEN, pkcs11_provider


def test_keks_live_in_the_token_and_cannot_leave_it(softhsm: str) -> None:
    """Every KEK version is a token key with SENSITIVE set and EXTRACTABLE cleared."""
    provider = pkcs11_provider(softhsm, label="kek-attributes")
    provider.rotate()
    token = pkcs11.lib(softhsm).get_token(token_label=TOKEN)
    with token.open(user_pin=PIN) as session:
        keys = [
            key
            for key in session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
            if str(key.label).startswith("kek-attributes/v")
        ]
        assert sorted(str(key.label) for key in keys) == ["kek-attributes/v1", "kek-attributes/v2"]
        for key in keys:
            assert key[Attribute.SENSITIVE] is True
            assert key[Attribute.EXTRACTABLE] is False
            assert key[Attribute.TOKEN] is True


def test_a_second_provider_on_the_same_token_sees_the_same_ring(softhsm: str) -> None:
    """A data key wrapped by one session opens through another provider on the same ring."""
    first = pkcs11_provider(softhsm, label="kek-shared")
    version, wrapped = first.wrap(b"\x07" * 32)
    second = pkcs11_provider(softhsm, label="kek-shared")
    assert second.kek_id == first.kek_id
    assert second.unwrap(version, wrapped) == b"\x07" * 32
