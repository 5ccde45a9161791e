"""The party's state store: jobs, decisions, step results and timings in SQLite.

One file, ``<state_dir>/party.sqlite``, so a restarted party still lists its
past jobs. Jobs that were not finished when the previous process stopped are
marked ``failed`` ("party restarted") on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Store", "TERMINAL"]

TERMINAL = frozenset({"succeeded", "failed", "refused", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id    TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    initiator TEXT NOT NULL,
    role      TEXT NOT NULL,
    state     TEXT NOT NULL,
    reason    TEXT NOT NULL DEFAULT '',
    job_json  TEXT NOT NULL,
    created   REAL NOT NULL,
    updated   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    job_id   TEXT NOT NULL,
    party    TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    reason   TEXT NOT NULL DEFAULT '',
    time     REAL NOT NULL,
    PRIMARY KEY (job_id, party)
);
CREATE TABLE IF NOT EXISTS steps (
    job_id      TEXT NOT NULL,
    party       TEXT NOT NULL,
    step        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL,
    seconds     REAL,
    result_json TEXT NOT NULL DEFAULT '{}',
    started     REAL,
    finished    REAL,
    PRIMARY KEY (job_id, party, step)
);
"""


class Store:
    """Thread-safe access to ``party.sqlite``.

    Parameters
    ----------
    path : path
        The database file (created with its tables if absent).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- jobs -------------------------------------------------------------------
    def add_job(self, job_id: str, name: str, initiator: str, role: str, state: str, job_json: str, reason: str = "") -> None:
        now = time.time()
        self._exec(
            "INSERT INTO jobs (job_id, name, initiator, role, state, reason, job_json, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, name, initiator, role, state, reason, job_json, now, now),
        )

    def remove_job(self, job_id: str) -> None:
        """Delete a job and its decisions and steps (undoes a creation whose audit record could not be written)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for table in ("steps", "decisions", "jobs"):
                    self._db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def has_job(self, job_id: str) -> bool:
        return bool(self._exec("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)))

    def set_state(self, job_id: str, state: str, reason: str = "") -> None:
        self._exec("UPDATE jobs SET state = ?, reason = ?, updated = ? WHERE job_id = ?", (state, reason, time.time(), job_id))

    def mark_interrupted(self) -> list[str]:
        """Fail jobs a previous process left unfinished; returns their ids."""
        rows = self._exec(
            "SELECT job_id, state FROM jobs WHERE state NOT IN (%s)" % ",".join("?" * len(TERMINAL)), tuple(TERMINAL)
        )
        for job_id, state in rows:
            self.set_state(job_id, "failed", f"party restarted while the job was {state}")
        return [r[0] for r in rows]

    def add_decision(self, job_id: str, party: str, accepted: bool, reason: str) -> None:
        self._exec(
            "INSERT OR REPLACE INTO decisions (job_id, party, accepted, reason, time) VALUES (?, ?, ?, ?, ?)",
            (job_id, party, int(accepted), reason, time.time()),
        )

    def set_step(self, job_id: str, party: str, step: str, kind: str, state: str, *, seconds: float | None = None,
                 result: dict | None = None, started: float | None = None) -> None:
        now = time.time()
        self._exec(
            "INSERT INTO steps (job_id, party, step, kind, state, seconds, result_json, started, finished) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(job_id, party, step) DO UPDATE SET "
            "state = excluded.state, seconds = COALESCE(excluded.seconds, steps.seconds), "
            "result_json = excluded.result_json, finished = excluded.finished",
            (job_id, party, step, kind, state, seconds, json.dumps(result or {}, sort_keys=True, default=str),
             started if started is not None else now, None if state == "running" else now),
        )

    def job(self, job_id: str) -> dict[str, Any] | None:
        rows = self.jobs(job_id=job_id)
        return rows[0] if rows else None

    def jobs(self, *, job_id: str = "", limit: int = 0) -> list[dict[str, Any]]:
        """Jobs, newest first, each with its decisions and steps."""
        sql = "SELECT job_id, name, initiator, role, state, reason, job_json, created, updated FROM jobs"
        args: tuple = ()
        if job_id:
            sql += " WHERE job_id = ?"
            args = (job_id,)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        out = []
        for jid, name, ini, role, state, reason, job_json, created, updated in self._exec(sql, args):
            decisions = {
                p: {"accepted": bool(a), "reason": r}
                for p, a, r in self._exec("SELECT party, accepted, reason FROM decisions WHERE job_id = ? ORDER BY party", (jid,))
            }
            steps = [
                {"party": p, "step": s, "kind": k, "state": st, "seconds": sec, "result": json.loads(res)}
                for p, s, k, st, sec, res in self._exec(
                    "SELECT party, step, kind, state, seconds, result_json FROM steps WHERE job_id = ? ORDER BY started, rowid",
                    (jid,),
                )
            ]
            out.append({
                "job_id": jid, "name": name, "initiator": ini, "role": role, "state": state, "reason": reason,
                "created": created, "updated": updated,
                "detail": {"job": json.loads(job_json), "decisions": decisions, "steps": steps},
            })
        return out
