"""Run report as one self-contained HTML page (plots are embedded PNGs).

:func:`render_html` turns a party's ``report.json`` (see
:mod:`fedcredit.party.report`) into a page a risk analyst can open in a
browser: the job and this party's role, the effective configuration, the
timings of every step, the bytes sent and received per peer and message
kind, and plots drawn with matplotlib's Agg backend and embedded as base64
PNGs (no file next to the page is needed):

* **IV per feature** from a ``binning`` step: on a host its own features
  only; on the guest every feature it learned the IV of (its own marked);
  the features a ``select`` step kept are highlighted.
* **Training curves** where a step provides one: SecureBoost's train and
  validation log-loss per tree, hetero LR's validation loss per epoch.
* **ROC, KS curve and score distribution** on the guest (only the label
  holder has labels and scores): from a ``scores.npz`` a step leaves in its
  directory (``ctx.artifacts.save_scores``; :func:`fedcredit.artifacts.save_scores`), else the ROC/KS PNGs an
  ``evaluate`` step wrote, and the score deciles of its lift table.

The page is built in :mod:`._sections` (one function per section), its
plots are drawn in :mod:`._plots`, and the small formatters are in
:mod:`._format`.

Nothing here reads data that the party does not already hold: the page is
built from this party's own report and step directories.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..artifacts import SCORES_FILE, save_scores

__all__ = ["render_html", "write_html", "save_scores", "SCORES_FILE", "HTML_NAME"]

HTML_NAME = "report.html"

_CSS = """
body{font:14px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2733;
 background:#f4f6f9;margin:0}
main{max-width:1100px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 10px;border-bottom:2px solid #d6dde6;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 8px}
.sub{color:#5b6776;margin-bottom:16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{background:#fff;border:1px solid #dbe2ea;border-radius:8px;padding:10px 14px;min-width:130px}
.card .k{color:#5b6776;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:20px;font-weight:600}
table{border-collapse:collapse;background:#fff;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #dbe2ea;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#eef2f7;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1d7a43;font-weight:600}.bad{color:#b8323a;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{background:#fff;border:1px solid #dbe2ea;border-radius:8px;margin:0;padding:8px;flex:0 1 330px}
figure.wide{flex:0 1 560px}
figure img{display:block;width:100%;height:auto}
figcaption{color:#5b6776;font-size:12px;margin-top:4px}
details{margin:6px 0}summary{cursor:pointer;color:#1f5fa8}
pre{background:#fff;border:1px solid #dbe2ea;padding:8px;overflow:auto;max-height:360px;font-size:12px}
.note{color:#5b6776;font-size:13px}
"""


from .._io import write_text_atomic
from ._format import _e, _when
from ._sections import (_cards, _config_section, _curves_section, _features_section, _importance_section,
                        _models_section, _steps_detail, _timing_section, _traffic_section)

# --------------------------------------------------------------------------- public API

def write_html(report: dict, path: str | os.PathLike, *, job_dir: str | os.PathLike | None = None) -> Path:
    """Render ``report`` (a ``report.json`` dict) and write it atomically to ``path``."""
    path = Path(path)
    text = render_html(report, job_dir=Path(job_dir) if job_dir is not None else path.parent)
    return write_text_atomic(path, text)


def render_html(report: dict, *, job_dir: str | os.PathLike | None = None) -> str:
    """The report page as a string.

    Parameters
    ----------
    report : dict
        A party's ``report.json`` content.
    job_dir : path, optional
        ``<state_dir>/jobs/<job_id>``: step directories there are searched
        for ``scores.npz`` and the PNGs an ``evaluate`` step wrote.

    Returns
    -------
    str
        A complete HTML document (UTF-8, no external resources).
    """
    job_dir = Path(job_dir) if job_dir is not None else None
    party = str(report.get("party", "?"))
    eff = report.get("effective_config") or {}
    role = eff.get("role", "?")
    steps = list(report.get("steps") or [])
    out: list[str] = []
    w = out.append
    w("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>")
    w(f"<title>fedcredit report: {_e(report.get('name', ''))} on {_e(party)}</title>")
    w("<meta name='viewport' content='width=device-width, initial-scale=1'>")
    w(f"<style>{_CSS}</style></head><body><main>")
    state = str(report.get("state", "?"))
    w(f"<h1>Job {_e(report.get('name', ''))} <span class='{'ok' if state == 'succeeded' else 'bad'}'>"
      f"{_e(state)}</span></h1>")
    w(f"<div class='sub'>job id <code>{_e(report.get('job_id', ''))}</code> · report of party <b>{_e(party)}</b> "
      f"(role <b>{_e(role)}</b>) · initiator {_e(eff.get('initiator', ''))} · written {_e(_when(report.get('written')))}"
      "</div>")
    if report.get("reason"):
        w(f"<p class='bad'>{_e(report['reason'])}</p>")
    w(_cards(report, steps))
    w(_models_section(report, steps, job_dir, role))
    w(_features_section(party, role, steps))
    w(_importance_section(party, role, steps))
    w(_curves_section(steps))
    w(_timing_section(report, steps))
    w(_traffic_section(steps))
    w(_config_section(report, eff))
    w(_steps_detail(steps))
    w("<p class='note'>Only the label holder (guest) has labels and scores, so ROC, KS and score plots appear on "
      "its report only; a host's report shows its own features' IV, its timings and what it sent and received. "
      "Generated by fedcredit.</p>")
    w("</main></body></html>")
    return "\n".join(x for x in out if x)
