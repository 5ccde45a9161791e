"""fedcredit._io: atomic, durable, owner-only file writes (issue 19, item 6)."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from fedcredit import _io


def _record_syscalls(monkeypatch):
    """Record fsync (of a file or a directory) and replace calls, in order."""
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file"))
        return real_fsync(fd)

    def replace(a, b):
        calls.append("replace")
        return real_replace(a, b)

    monkeypatch.setattr(_io.os, "fsync", fsync)
    monkeypatch.setattr(_io.os, "replace", replace)
    return calls


def test_file_synced_before_rename_and_directory_after(tmp_path, monkeypatch):
    """Durability: without the directory fsync a power loss can bring back the old file (e.g. a revoked peer)."""
    calls = _record_syscalls(monkeypatch)
    p = _io.write_json_atomic(tmp_path / "revoked.json", {"bank": {"reason": "x"}}, sort_keys=True)
    assert calls == ["fsync-file", "replace", "fsync-dir"]
    assert json.loads(p.read_text()) == {"bank": {"reason": "x"}}
    assert (p.stat().st_mode & 0o777) == 0o600
    assert sorted(x.name for x in tmp_path.iterdir()) == ["revoked.json"]  # no temporary file left


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    p = tmp_path / "state.json"
    _io.write_json_atomic(p, {"v": 1})

    def boom(a, b):
        raise OSError("disk full")

    monkeypatch.setattr(_io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        _io.write_text_atomic(p, json.dumps({"v": 2}))
    assert json.loads(p.read_text()) == {"v": 1}
    assert sorted(x.name for x in tmp_path.iterdir()) == ["state.json"]
    with pytest.raises(TypeError):  # not JSON: nothing written at all
        _io.write_json_atomic(p, {"v": object()})
    assert json.loads(p.read_text()) == {"v": 1}


def test_concurrent_writers_never_leave_a_torn_file(tmp_path):
    """Each write has its own temporary file: the result is one writer's whole file, never a mix."""
    p = tmp_path / "heads.json"
    payloads = [{"w": i, "pad": str(i) * 20_000} for i in range(8)]
    threads = [threading.Thread(target=lambda d=d: [_io.write_json_atomic(p, d) for _ in range(20)]) for d in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads(p.read_text()) in payloads
    assert sorted(x.name for x in tmp_path.iterdir()) == ["heads.json"]


def test_bytes_and_text_siblings(tmp_path):
    assert _io.write_bytes_atomic(tmp_path / "a" / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
    assert _io.write_text_atomic(tmp_path / "t.txt", "héllo\n").read_text(encoding="utf-8") == "héllo\n"


def test_no_hand_written_temp_and_rename_left():
    """Every rewrite-in-place goes through fedcredit._io (no own temp file + os.replace) anywhere in the package."""
    import pathlib

    import fedcredit

    root = pathlib.Path(fedcredit.__file__).parent
    # certs.py renames the retired CA's own files (not a rewrite); _io.py is the one writer
    own = [str(p.relative_to(root)) for p in root.rglob("*.py")
           if p.name not in ("_io.py", "certs.py") and "os.replace(" in p.read_text()]
    assert not own, f"write through fedcredit._io instead: {own}"
