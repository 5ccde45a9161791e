"""``report.json`` and ``report.html``: one each per job and party, in ``<state_dir>/jobs/<job_id>/``.

Contents: the effective config (the job as run, this party's role, table,
columns and policy summary), per-step results and seconds, and the bytes and
messages per peer and message kind of every step (from ``Channel.stats``).
The initiator's report also holds what the other parties reported publicly
(step seconds, bytes sent, public result summaries).

``report.html`` is the same report as a page with embedded plots
(:mod:`fedcredit.report`); a failure to draw it is logged and never affects
``report.json`` or the job.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .._io import write_json_atomic
from ..ids import private_dir

if TYPE_CHECKING:  # pragma: no cover
    from .job import PartyJob

__all__ = ["write_report", "REPORT_NAME", "HTML_NAME"]

REPORT_NAME = "report.json"
HTML_NAME = "report.html"

log = logging.getLogger(__name__)


def write_report(job: "PartyJob", *, party: str, row: dict, summary: dict, columns: list | None,
                 directory: Path) -> Path:
    """Write (atomically) and return the path of ``report.json`` for ``job`` in ``directory``.

    Parameters
    ----------
    job : PartyJob
        The job as this party holds it (spec, role, state, and on the initiator what the others reported).
    party : str
        This party's name.
    row : dict
        The job's row in this party's store (``Store.job``: steps and decisions).
    summary : dict
        This party's config summary (``PartyConfig.summary()``): its policy, transport and compute sections.
    columns : list of str or None
        The columns this party uses in the job (None without a table).
    directory : Path
        The job's directory (``<state_dir>/jobs/<job_id>``; built from checked names by the caller).
    """
    steps = [s for s in (row.get("detail") or {}).get("steps", []) if s["party"] == party]
    me = job.spec.parties.get(party)
    effective = {
        "job": job.spec.to_dict(),
        "job_id": job.job_id,
        "party": party,
        "role": job.role,
        "initiator": job.initiator,
        "table": me.table if me else None,
        "columns": columns,
        "policy": summary["policy"],
        "transport": summary["transport"],
        "compute": summary["compute"],
    }
    report = {
        "job_id": job.job_id,
        "name": job.spec.name,
        "party": party,
        "state": job.state,
        "reason": job.reason,
        "created": job.created,
        "written": time.time(),
        "effective_config": effective,
        "steps": [
            {
                "step": s["step"],
                "kind": s["kind"],
                "state": s["state"],
                "seconds": s["seconds"],
                "result": s["result"].get("result", s["result"]),
                "traffic": s["result"].get("traffic"),
            }
            for s in steps
        ],
        "decisions": (row.get("detail") or {}).get("decisions", {}),
    }
    if job.initiator == party:
        report["parties"] = {p: {"state": job.party_state.get(p, "unknown"), "steps": dict(job.party_steps.get(p, {}))}
                             for p in job.spec.parties}
    d = private_dir(directory)
    path = d / REPORT_NAME
    write_json_atomic(path, report, indent=2, sort_keys=True, default=str)
    try:
        from ..report import write_html

        write_html(json.loads(json.dumps(report, default=str)), d / HTML_NAME, job_dir=d)
    except Exception:  # noqa: BLE001 - the HTML page is a convenience; report.json is the record
        log.exception("job %s: could not write %s", job.job_id, HTML_NAME)
    return path
