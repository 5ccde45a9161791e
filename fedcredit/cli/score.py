"""``fedcredit score``: federated scoring of new applicants through your own party (the model's guest).

Talks to the operator's own party over mTLS with the party's own certificate (the party
sees "its operator"); errors are fedcredit errors, mapped to exit codes by :mod:`fedcredit.cli`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..models import explain
from ..own_party import own_channel
from ._common import load_party
from ._console import out
from .exit_codes import ExitCode

__all__ = ["add_commands", "cmd_score", "score_file", "UNKNOWN_RULES"]


UNKNOWN_RULES = ("flag", "refuse", "score-as-missing")


def score_file(cfg, model_id: str, input_path, out_path, *, consent: str, purpose: str, id_column: str = "id",
               batch: int = 10_000, timeout: float = 120.0, unknown: str = "flag", units: bool = False,
               reasons: int = 0, grades=None, scale: dict | None = None) -> int:
    """Score every row of ``input_path`` (an id column, optionally the bank's own feature columns); returns the count.

    Writes rows to ``out_path`` in input order: ``id,score`` (``score`` = the
    probability of default), with ``units`` or ``reasons`` then ``points``
    (scorecard points on ``scale``, else the model's scorecard step's, else
    :data:`~fedcredit.models.explain.DEFAULT_SCALE`) and ``grade`` (``grades``,
    else :data:`~fedcredit.models.explain.DEFAULT_GRADES`), then
    ``held_by,status``, and with ``reasons`` = K ``reason_1 .. reason_K`` with
    ``reason_k_points``, the points each reason costs the applicant (log-odds
    beyond its reference x pdo / ln 2). ``held_by`` names this party when it
    holds the applicant (hosts do not say whether they hold one: that would
    tell the bank who a platform's customers are); ``status`` is ``scored``,
    ``flagged`` (scored, but not a customer of this party: its own features
    were all missing) or ``refused`` (``unknown="refuse"``: not sent to any
    host, no score).
    """
    if unknown not in UNKNOWN_RULES:
        raise ConfigError(f"--unknown must be one of {', '.join(UNKNOWN_RULES)}, got {unknown!r}")
    from ..data import load_table
    from ..transport.scoring import ScoringClient

    table = load_table(input_path, party=cfg.name, id_column=id_column)  # errors name the file, line and column
    ids = [str(i) for i in table.ids]
    feats = list(table.columns)
    X = table.X if feats else None
    ch = own_channel(cfg)
    results, helds = [], []
    full = bool(units or reasons)
    try:
        client = ScoringClient(ch, cfg.name, timeout=timeout)
        for k in range(0, len(ids), batch):
            kw = dict(consent_id=consent, purpose=purpose, guest_X=None if X is None else X[k:k + batch],
                      feature_names=feats, unknown=unknown)
            if full:
                res = client.score_full(model_id, ids[k:k + batch], reasons=reasons, **kw)
                results.append(res)
                helds.append(res.held)
            else:
                s, _, held = client.score(model_id, ids[k:k + batch], **kw)
                results.append(s)
                helds.append(held)
    finally:
        ch.close()
    held = np.concatenate(helds) if helds else np.empty(0, dtype=bool)
    with Path(out_path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        if not full:
            values = np.concatenate(results) if results else np.empty(0)
            w.writerow([id_column, "score", "held_by", "status"])
            w.writerows(_score_row(i, v, h, cfg.name, unknown) for i, v, h in zip(ids, values, held.tolist()))
            return len(ids)
        w.writerow([id_column, "score", "points", "grade", "held_by", "status"]
                   + [c for j in range(1, reasons + 1) for c in (f"reason_{j}", f"reason_{j}_points")])
        at = 0
        for res in results:
            for r in range(len(res.scores)):
                w.writerow(_full_row(ids[at + r], res, r, bool(held[at + r]), cfg.name, unknown, reasons, grades, scale))
            at += len(res.scores)
    return len(ids)


def _full_row(i: str, res, r: int, held: bool, me: str, unknown: str, reasons: int, grades, scale) -> list:
    """One applicant's ``id,score,points,grade,held_by,status,reason_k,reason_k_points...`` (a refused one: blanks)."""
    _, score, held_by, status = _score_row(i, res.scores[r], held, me, unknown)
    if status == "refused":
        return [i, "", "", "", held_by, status] + ["", ""] * reasons
    sc = {**explain.DEFAULT_SCALE, **(res.scale or {}), **(scale or {})}
    factor = sc["pdo"] / math.log(2.0)
    row = [i, score, f"{explain.points(res.log_odds[r:r + 1], **sc)[0]:.2f}",
           str(explain.grade(res.scores[r:r + 1], grades or explain.DEFAULT_GRADES)[0]), held_by, status]
    for j in range(reasons):
        q = int(res.reason_index[r, j])
        row += ["", ""] if q < 0 else [res.reason_names[q], f"{factor * res.reason_values[r, j]:.2f}"]
    return row


def _score_row(i: str, v: float, held: bool, me: str, unknown: str) -> tuple:
    if held:
        return i, f"{v:.12g}", me, "scored"
    if unknown == "refuse":
        return i, "", "", "refused"
    return i, f"{v:.12g}", "", "flagged" if unknown == "flag" else "scored"


def cmd_score(args) -> int:
    cfg = load_party(args.party)
    if bool(args.input) == bool(args.id):
        raise ConfigError("give exactly one of --input CSV or --id ID")
    grades = explain.parse_grades(args.grades) if args.grades else None
    scale = {k: v for k, v in (("pdo", args.pdo), ("base_score", args.base_score), ("base_odds", args.base_odds))
             if v is not None}
    if not 0 <= args.reasons <= 32:
        raise ConfigError("--reasons must be in 0..32")
    if args.id:
        from ..transport.scoring import ScoringClient

        ch = own_channel(cfg)
        try:
            res = ScoringClient(ch, cfg.name, timeout=args.timeout).score_full(
                args.model, [args.id], consent_id=args.consent, purpose=args.purpose, reasons=args.reasons,
                unknown=args.unknown)
        finally:
            ch.close()
        if not args.reasons:  # one line 'id,score,held_by,status'; with --reasons also points, grade and reasons
            out(",".join(_score_row(args.id, res.scores[0], bool(res.held[0]), cfg.name, args.unknown)))
            return ExitCode.OK
        row = _full_row(args.id, res, 0, bool(res.held[0]), cfg.name, args.unknown, args.reasons, grades, scale)
        out(",".join(c for c in row))
        return ExitCode.OK
    if not args.out:
        raise ConfigError("--out is required with --input")
    n = score_file(cfg, args.model, args.input, args.out, consent=args.consent, purpose=args.purpose,
                   id_column=args.id_column, batch=args.batch, timeout=args.timeout, unknown=args.unknown,
                   units=args.units, reasons=args.reasons, grades=grades, scale=scale or None)
    out(f"scored {n} applicant(s) with {args.model}: {args.out}")
    return ExitCode.OK



def add_commands(sub, *, epilog: str, fmt) -> None:
    """Register ``score``."""
    c = sub.add_parser("score", help="federated scoring of new applicants",
                       description="Score applicants with model ID (<job_id>/<step>) through your own party (the "
                                   "model's guest): each host checks the authorization against its policy, logs the "
                                   "request and returns its part (LR: masked; trees: only its decisions on each "
                                   "applicant's path). --input CSV has an id column and, "
                                   "optionally, your own feature columns for the applicants (otherwise they are "
                                   "looked up in your table).", epilog=epilog, formatter_class=fmt)
    c.add_argument("--party", required=True, metavar="CONFIG", help="your party's config TOML")
    c.add_argument("--model", required=True, metavar="ID", help="<job_id>/<step> of the training job")
    c.add_argument("--input", metavar="CSV", help="applicants")
    c.add_argument("--id", metavar="ID", help="score one applicant and print 'id,score' (with --reasons: "
                                              "'id,score,points,grade,reason,points,...')")
    c.add_argument("--out", metavar="CSV", help="where to write id,score,points,grade[,reason_k,reason_k_points]")
    c.add_argument("--consent", required=True, metavar="REF", help="the enterprise's consent record id")
    c.add_argument("--purpose", required=True, help="purpose of the inquiry (checked against each party's policy)")
    c.add_argument("--id-column", default="id", help="id column of --input (default: id)")
    c.add_argument("--batch", type=int, default=10_000, help="applicants per request (default 10000)")
    c.add_argument("--unknown", choices=UNKNOWN_RULES, default="flag",
                   help="an applicant this party does not hold: flag it (default: scored, status 'flagged'), "
                        "refuse it (never sent to a host, no score) or score it as missing (status 'scored')")
    c.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    c.add_argument("--reasons", type=int, default=0, metavar="K",
                   help="also the K features that pushed each score most towards default, with the points each "
                        "costs (hosts' features as their policies publish them; see docs/scoring.md)")
    c.add_argument("--no-units", dest="units", action="store_false",
                   help="write only id,score (the probability of default); by default also points and grade")
    c.add_argument("--grades", metavar="SPEC",
                   help="risk grades by PD upper bound, e.g. 'A=0.02,B=0.05,C=0.1,D=0.2,E=0.4,F' (the default)")
    c.add_argument("--pdo", type=float, help="points to double the odds (default: the model's scorecard step, "
                                             "else 20)")
    c.add_argument("--base-score", type=float, help="points at --base-odds (default: scorecard step, else 600)")
    c.add_argument("--base-odds", type=float, help="good:bad odds at --base-score (default: scorecard step, else 50)")
    c.set_defaults(func=cmd_score)
