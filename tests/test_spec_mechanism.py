"""The one protocol-spec mechanism (fedcredit.protocols._spec): tags, roles, payloads, order, public keys."""

import enum

import numpy as np
import pytest

from fedcredit.errors import ProtocolError
from fedcredit.protocols._spec import (PUBLIC_KEY, Message, Spec, decode_public_key, encode_public_key,
                                       sequence)
from fedcredit.testing import small_keypair, small_ou_keypair
from fedcredit.transport.memory import MemoryHub, run_local


class Stage(str, enum.Enum):
    KEY = "key"
    DATA = "data"
    ACK = "ack"
    INNER = "inner"


SPEC = Spec("toy", [
    Message(Stage.KEY, "guest", "host", "job", {"public_key": PUBLIC_KEY, "n": int}),
    Message(Stage.DATA, "guest", "host", "round", {"x": ("ndarray", np.float64), "stop": bool}, notice="stop"),
    Message(Stage.ACK, "host", "guest", "round", ("bytes", 4)),
    Message(Stage.INNER, "guest", "host", None, {"k": int}),
], scopes={"round": "round-{r}/{stage}"},
    flow=sequence(Stage.KEY, Stage.DATA, Stage.INNER, Stage.ACK, loop_to=Stage.DATA))

ROLES = {"g": "guest", "h": "host"}


def test_tags_are_derived_from_scope_and_index():
    assert SPEC.tag(Stage.KEY) == "key"
    assert SPEC.tag(Stage.DATA, r=3) == "round-3/data"
    for bad in ({}, {"r": -1}, {"r": True}, {"r": "a/b"}, {"r": 1, "t": 2}):
        with pytest.raises(ProtocolError):
            SPEC.tag(Stage.DATA, **bad)
    with pytest.raises(ProtocolError, match="no tag"):
        SPEC.tag(Stage.INNER)


def test_round_trip_with_roles_order_and_key():
    pk, _ = small_keypair()

    def guest(ch):
        s = SPEC.session(ROLES, "g")
        s.send(ch, "h", Stage.KEY, {"public_key": encode_public_key(pk), "n": 2})
        for r in range(2):
            s.send(ch, "h", Stage.DATA, {"x": np.zeros(2), "stop": False}, r=r)
            s.note_sent("h", Stage.INNER)
            assert s.recv(ch, "h", Stage.ACK, r=r) == b"abcd"
        return s.stage_with("h")

    def host(ch):
        s = SPEC.session(ROLES, "h")
        key = decode_public_key(s.recv(ch, "g", Stage.KEY)["public_key"])
        for r in range(2):
            s.recv(ch, "g", Stage.DATA, r=r)
            s.check("g", Stage.INNER, {"k": 1})
            s.send(ch, "g", Stage.ACK, b"abcd", r=r)
        return key.n

    out = run_local({"g": guest, "h": host}, timeout=20)
    assert out == {"g": Stage.ACK, "h": pk.n}


@pytest.mark.parametrize("payload", [
    [1], {"public_key": {"scheme": "paillier", "n": b"\x01"}}, {"public_key": None, "n": 1},
    {"public_key": {"scheme": "paillier", "n": b"\x01"}, "n": True},
    {"public_key": {"scheme": "paillier", "n": b"\x01"}, "n": 1, "extra": 0},
])
def test_payload_shape_and_exact_types(payload):
    with pytest.raises(ProtocolError, match="toy key"):
        SPEC.check(Stage.KEY, payload)


def test_notice_carries_only_its_flag():
    assert SPEC.check(Stage.DATA, {"stop": True}) == {"stop": True}
    with pytest.raises(ProtocolError):
        SPEC.check(Stage.DATA, {"stop": False})
    with pytest.raises(ProtocolError):
        SPEC.check(Stage.DATA, {"stop": True, "x": np.zeros(1)})
    with pytest.raises(ProtocolError):
        SPEC.check(Stage.ACK, b"abc")


def test_wrong_roles_refused_before_any_traffic():
    hub = MemoryHub(["g", "h", "h2"])
    s = SPEC.session({"g": "guest", "h": "host", "h2": "host"}, "h")
    with pytest.raises(ProtocolError, match="expected the guest"):
        s.recv(hub.channel("h"), "h2", Stage.KEY)  # a host posing as the key sender
    with pytest.raises(ProtocolError, match="cannot send"):
        s.send(hub.channel("h"), "g", Stage.KEY, {})
    assert hub.captured == []


def test_out_of_order_is_refused():
    """Flower's check_stage: ACK before DATA, DATA twice in a row, or starting anywhere but KEY fail."""
    hub = MemoryHub(["g", "h"])
    ch = hub.channel("g")
    s = SPEC.session(ROLES, "g")
    with pytest.raises(ProtocolError, match="out of order"):
        s.send(ch, "h", Stage.DATA, {"stop": True}, r=0)
    s.send(ch, "h", Stage.KEY, {})
    with pytest.raises(ProtocolError, match="out of order"):
        s.recv(ch, "h", Stage.ACK, r=0)
    s.send(ch, "h", Stage.DATA, {"stop": True}, r=0)
    with pytest.raises(ProtocolError, match="out of order"):
        s.send(ch, "h", Stage.DATA, {"stop": True}, r=1)
    assert [t for _, _, t, _ in hub.captured] == ["key", "round-0/data"]


def test_public_key_one_wire_shape():
    pk, _ = small_keypair()
    opk, _ = small_ou_keypair()
    assert decode_public_key(encode_public_key(pk)).n == pk.n
    assert decode_public_key(encode_public_key(opk)).n == opk.n
    with pytest.raises(ProtocolError, match="not accepted"):
        decode_public_key(encode_public_key(opk), schemes=("paillier",))
    w = encode_public_key(opk)
    with pytest.raises(ProtocolError, match="not a valid ou"):
        decode_public_key({**w, "h": w["g"]})
    with pytest.raises(ProtocolError):
        decode_public_key({"scheme": "paillier", "n": 5})


def test_spec_refuses_undeclared_flow_stage_and_duplicates():
    with pytest.raises(ValueError):
        Spec("x", [Message(Stage.KEY, "guest", "host")], flow=sequence(Stage.KEY, Stage.ACK))
    with pytest.raises(ValueError):
        Spec("x", [Message(Stage.KEY, "guest", "host"), Message(Stage.KEY, "host", "guest")])
