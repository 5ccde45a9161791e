"""Where a job step keeps what it produces: model parts, scores, plots, tables and round checkpoints.

A protocol never builds a path or opens a file (DESIGN §3, issue #19 item 4):
it calls the ``artifacts`` object of its step context, as it calls
``ctx.progress`` and ``ctx.check_cancelled``::

    ctx.artifacts.save_json(GUEST_FILE, model.to_dict())      # a model part
    ctx.artifacts.save_scores(y, score, validation=mask)      # the guest's labels and scores, for the report
    ctx.artifacts.save_bytes("roc.png", png)                  # a plot, a scorecard table

The party process (and the Python API) hands each step a
:class:`FileArtifacts` over the step's private directory
``<state_dir>/jobs/<job_id>/<step>/``; tests and in-memory runs may use
:class:`MemoryArtifacts`. The per-round checkpoints of
:class:`fedcredit.protocols.checkpoint.Checkpoint` are stored through the
same object (``*_checkpoint`` methods), so a step's state lives in one place.

Names are chosen by the protocol code, never by a peer; they are still
checked to be plain file names (no separator, no ``..``), so no name can
reach outside the step's directory. Every file is written atomically
(temporary file, fsync, rename) with mode 0600: model parts, labels and
scores are this party's own data.

This module sits with the low-level helpers (``_io``): the report, the
scoring service and the party read what steps wrote through it (e.g.
:func:`load_scores`), and it imports nothing above ``errors``.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np

from ._io import write_bytes_atomic, write_json_atomic
from .errors import DataError

__all__ = ["Artifacts", "FileArtifacts", "MemoryArtifacts", "SCORES_FILE", "save_scores", "load_scores",
           "read_json", "write_json"]

#: The guest's labels and scores for the report (arrays ``y``, ``score`` and optionally ``validation``).
SCORES_FILE = "scores.npz"

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
_CKPT_PREFIX = "ckpt-"


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(f"artifact name must be a plain file name, got {str(name)[:60]!r}")
    return name


def _scores_npz(y, score, validation=None) -> bytes:
    """The ``scores.npz`` bytes, checked (1-d, equal length)."""
    y = np.asarray(y).astype(np.int8)
    score = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or score.shape != y.shape:
        raise DataError(f"y and score must be 1-d of equal length; got shapes {y.shape} and {score.shape}")
    arrays = {"y": y, "score": score}
    if validation is not None:
        v = np.asarray(validation)
        arrays["validation"] = v.astype(bool) if v.dtype == bool else np.isin(np.arange(len(y)), v)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _write_private(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably, owner-only (0600): :func:`fedcredit._io.write_bytes_atomic`."""
    return write_bytes_atomic(path, data)


def save_scores(path: str | os.PathLike, y, score, *, validation=None) -> Path:
    """Save the guest's labels and scores for the report (ROC, KS, score distribution).

    Parameters
    ----------
    path : path
        Usually ``<step dir>/scores.npz`` (:data:`SCORES_FILE`); the file stays on the guest.
    y : array-like of shape (n,)
        Binary labels.
    score : array-like of shape (n,)
        Predicted probability of default.
    validation : array-like of bool or int, optional
        Mask or row positions of the validation rows.

    Returns
    -------
    Path
    """
    return _write_private(Path(path), _scores_npz(y, score, validation))


def load_scores(path: str | os.PathLike):
    """``(y, score, validation or None)`` from a :data:`SCORES_FILE`, or None if absent or unusable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            y, s = np.asarray(z["y"]), np.asarray(z["score"], dtype=np.float64)
            v = np.asarray(z["validation"], dtype=bool) if "validation" in z.files else None
    except (OSError, KeyError, ValueError):
        return None
    if y.shape != s.shape or y.ndim != 1 or len(np.unique(y)) < 2:
        return None
    return y, s, v


def read_json(path: str | os.PathLike, what: str = "file") -> dict:
    """A JSON object from ``path``; DataError (naming ``what``) if it cannot be read or is not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read {what} ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a {what}")
    return obj


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically, owner-only (for tools saving a model part by path)."""
    return write_json_atomic(path, obj)


class Artifacts:
    """What a step may keep on its party: the interface protocols program against.

    Subclasses store named JSON documents and byte blobs and the step's round
    checkpoints. ``save_*`` methods return a reference for the step's result
    (a path for files, the name in memory).
    """

    # -- named documents
    def save_json(self, name: str, obj: dict) -> str:
        raise NotImplementedError

    def load_json(self, name: str) -> dict | None:
        """The document saved as ``name``, or None if there is none."""
        raise NotImplementedError

    def save_bytes(self, name: str, data: bytes) -> str:
        raise NotImplementedError

    def save_scores(self, y, score, *, validation=None) -> str:
        """The guest's labels and scores for the report (:data:`SCORES_FILE`)."""
        return self.save_bytes(SCORES_FILE, _scores_npz(y, score, validation))

    # -- round checkpoints (used by fedcredit.protocols.checkpoint.Checkpoint)
    def checkpoint_rounds(self) -> list[int]:
        raise NotImplementedError

    def save_checkpoint(self, round_: int, text: str) -> None:
        raise NotImplementedError

    def load_checkpoint(self, round_: int) -> str:
        raise NotImplementedError

    def drop_checkpoint(self, round_: int) -> None:
        raise NotImplementedError


class FileArtifacts(Artifacts):
    """Artifacts as files in one directory (the step's private directory on a party).

    Parameters
    ----------
    directory : path
        Created (0700) on the first write.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"FileArtifacts({str(self.directory)!r})"

    def path(self, name: str) -> Path:
        """The file of ``name`` (for readers of a finished step: the report, the scoring service)."""
        return self.directory / _check_name(name)

    def save_json(self, name: str, obj: dict) -> str:
        return str(write_json_atomic(self.path(name), obj))

    def load_json(self, name: str) -> dict | None:
        p = self.path(name)
        return read_json(p, name) if p.is_file() else None

    def save_bytes(self, name: str, data: bytes) -> str:
        return str(_write_private(self.path(name), bytes(data)))

    def _ckpt(self, round_: int) -> Path:
        return self.directory / f"{_CKPT_PREFIX}{int(round_)}.json"

    def checkpoint_rounds(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.glob(f"{_CKPT_PREFIX}*.json"):
            stem = p.name[len(_CKPT_PREFIX):-len(".json")]
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    def save_checkpoint(self, round_: int, text: str) -> None:
        _write_private(self._ckpt(round_), text.encode("utf-8"))

    def load_checkpoint(self, round_: int) -> str:
        return self._ckpt(round_).read_text(encoding="utf-8")

    def drop_checkpoint(self, round_: int) -> None:
        self._ckpt(round_).unlink(missing_ok=True)


class MemoryArtifacts(Artifacts):
    """Artifacts kept in this object (tests, in-memory runs): ``.files`` maps name to bytes."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.checkpoints: dict[int, str] = {}

    def save_json(self, name: str, obj: dict) -> str:
        self.files[_check_name(name)] = json.dumps(obj).encode("utf-8")
        return name

    def load_json(self, name: str) -> dict | None:
        data = self.files.get(_check_name(name))
        return None if data is None else json.loads(data)

    def save_bytes(self, name: str, data: bytes) -> str:
        self.files[_check_name(name)] = bytes(data)
        return name

    def checkpoint_rounds(self) -> list[int]:
        return sorted(self.checkpoints)

    def save_checkpoint(self, round_: int, text: str) -> None:
        self.checkpoints[int(round_)] = text

    def load_checkpoint(self, round_: int) -> str:
        return self.checkpoints[int(round_)]

    def drop_checkpoint(self, round_: int) -> None:
        self.checkpoints.pop(int(round_), None)
