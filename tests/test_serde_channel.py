"""Serde round trips and Channel rules (tags, duplicates, peers, failures)."""

import numpy as np
import pytest

from fedcredit.crypto.blob import CipherBlob
from fedcredit.errors import PeerError, ProtocolError
from fedcredit.transport import MemoryHub, run_local, serde


@pytest.mark.parametrize(
    "obj",
    [
        None, True, 0, -5, 2**63, -(2**200), 1.5, "云", b"\x00\xff", [1, "a", None],
        {"b": 1, "a": [2.0, {"c": b"x"}]},
        np.arange(12, dtype=np.int64).reshape(3, 4),
        np.array([True, False]),
        np.linspace(-1, 1, 7, dtype=np.float32),
    ],
)
def test_serde_round_trip(obj):
    out = serde.decode(serde.encode(obj))
    if isinstance(obj, np.ndarray):
        assert out.dtype == obj.dtype and out.shape == obj.shape
        np.testing.assert_array_equal(out, obj)
    else:
        assert out == obj


def test_serde_blob_round_trip():
    blob = CipherBlob("paillier", b"fp", 4, 2, b"abcdefgh", {"exp": -16})
    assert serde.decode(serde.encode(blob)) == blob


@pytest.mark.parametrize("obj", [object(), {1: 2}, np.array(["a"]), np.array([object()])])
def test_serde_refuses_other_types(obj):
    with pytest.raises(ProtocolError):
        serde.encode(obj)


def test_serde_malformed_bytes():
    with pytest.raises(ProtocolError, match="malformed"):
        serde.decode(b"\xff\xff\xff")


def test_serde_array_length_mismatch():
    from fedcredit._proto import payload_pb2 as pb

    bad = pb.Value(array_value=pb.NDArray(dtype="<f8", shape=[3], data=b"\x00" * 8)).SerializeToString()
    with pytest.raises(ProtocolError, match="needs 24"):
        serde.decode(bad)


def test_channel_namespaces_and_rejects_duplicate_tags():
    hub = MemoryHub(["a", "b"])
    a, b = hub.channel("a"), hub.channel("b")
    a.sub("job1", "psi").send("b", "round-1", 7)
    assert b.sub("job1").recv("a", "psi/round-1", timeout=1) == 7
    with pytest.raises(ProtocolError, match="already sent"):
        a.send("b", "job1/psi/round-1", 8)
    with pytest.raises(ProtocolError, match="already received"):
        b.recv("a", "job1/psi/round-1", timeout=1)
    assert hub.captured[0][:3] == ("a", "b", "job1/psi/round-1")
    assert a.stats.total("sent", "b") == len(hub.captured[0][3])


@pytest.mark.parametrize("tag", ["", "a//b", "a b", "../x", None])
def test_channel_rejects_bad_tags(tag):
    ch = MemoryHub(["a", "b"]).channel("a")
    with pytest.raises(ProtocolError, match="invalid tag"):
        ch.send("b", tag, 1)


def test_channel_unknown_peer_and_timeout():
    ch = MemoryHub(["a", "b"]).channel("a")
    with pytest.raises(PeerError, match="not a peer"):
        ch.send("mallory", "x", 1)
    with pytest.raises(PeerError, match="timed out.*'b'"):
        ch.recv("b", "x", timeout=0.05)


def test_run_local_propagates_failure_fast():
    def a(ch):
        raise ValueError("bad data in a")

    def b(ch):
        return ch.recv("a", "never")

    with pytest.raises(ValueError, match="bad data in a"):
        run_local({"a": a, "b": b}, timeout=30)
