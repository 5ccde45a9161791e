"""Audit log: the hash chain detects changed bytes, deleted/reordered lines, truncation and rewriting."""

from __future__ import annotations

import json

import pytest

from fedcredit.audit import GENESIS, AuditLog, record_hash, verify
from fedcredit.errors import DataError


@pytest.fixture
def log(tmp_path):
    a = AuditLog(tmp_path / "audit.log")
    a.append("job.proposed", job_id="j1", parties=["bank", "chain"])
    a.append("job.decision", job_id="j1", accepted=True, reason="")
    a.append("step.finished", job_id="j1", step="handshake", seconds=0.25, messages={"chain": {"bytes": 12}})
    a.append("job.finished", job_id="j1", state="succeeded", note="naïve ünïcode")
    return a


def test_chain_verifies_and_head(log):
    res = verify(log.path)
    assert res.ok and res.records == 4 and res.first_bad_line is None
    assert res.head == log.head()
    recs = log.records()
    assert recs[0]["prev"] == GENESIS
    assert all(r["hash"] == record_hash(r) for r in recs)
    assert all(b["prev"] == a["hash"] for a, b in zip(recs, recs[1:]))


def test_reopen_continues_chain(log):
    again = AuditLog(log.path)
    assert again.head() == log.head()
    again.append("x")
    assert verify(log.path).records == 5


@pytest.mark.parametrize("line_index", [0, 2, 3])
def test_one_changed_byte_is_detected(log, line_index):
    lines = log.path.read_bytes().splitlines(keepends=True)
    target = bytearray(lines[line_index])
    pos = target.index(b'"kind":"') + 8
    target[pos] ^= 0x01  # flip one bit of one byte
    lines[line_index] = bytes(target)
    log.path.write_bytes(b"".join(lines))
    res = verify(log.path)
    assert not res.ok
    assert res.first_bad_line == line_index + 1
    assert "changed" in res.reason


def test_every_single_byte_change_is_detected(log):
    original = log.path.read_bytes()
    for pos in range(0, len(original) - 1, 7):
        data = bytearray(original)
        data[pos] = (data[pos] + 1) % 256
        log.path.write_bytes(bytes(data))
        assert not verify(log.path).ok, f"change at byte {pos} went unnoticed"


def test_deleted_and_reordered_lines(log):
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:1] + lines[2:]))
    res = verify(log.path)
    assert not res.ok and res.first_bad_line == 2 and "deleted" in res.reason
    log.path.write_bytes(b"".join([lines[1], lines[0], *lines[2:]]))
    res = verify(log.path)
    assert not res.ok and res.first_bad_line == 1


def test_truncation_needs_a_known_head(log):
    head = log.head()
    lines = log.path.read_bytes().splitlines(keepends=True)
    log.path.write_bytes(b"".join(lines[:2]))
    assert verify(log.path).ok  # invisible from the log alone
    res = verify(log.path, known_heads=[head])
    assert not res.ok and "truncated" in res.reason and res.first_bad_line == 3


def test_rewrite_with_fresh_hashes_needs_a_known_head(log, tmp_path):
    head = log.head()
    recs = log.records()
    recs[1]["fields"]["accepted"] = False
    prev = GENESIS
    out = []
    for r in recs:
        r["prev"] = prev
        r["hash"] = record_hash(r)
        prev = r["hash"]
        out.append(json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
    log.path.write_text("".join(out), encoding="utf-8")
    assert verify(log.path).ok
    res = verify(log.path, known_heads=[head])
    assert not res.ok and "rewritten" in res.reason


def test_partial_last_line_and_refuse_to_append(log):
    with log.path.open("ab") as f:
        f.write(b'{"seq":5')
    res = verify(log.path)
    assert not res.ok and res.first_bad_line == 5
    with pytest.raises(DataError, match="broken at line 5"):
        AuditLog(log.path)


def test_missing_file_is_empty(tmp_path):
    res = verify(tmp_path / "none.log")
    assert res.ok and res.records == 0 and res.head == (0, GENESIS)
