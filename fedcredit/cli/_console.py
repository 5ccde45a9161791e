"""What the commands print: plain lines, job event lines, the per-step table and the headline metrics."""

from __future__ import annotations

from ..progress import EventDisplay, human_bytes

__all__ = ["out", "EventDisplay", "human_bytes", "print_steps", "print_headlines"]


def out(msg: str = "") -> None:
    """One line on stdout, flushed (the commands' output is read by scripts and tests line by line)."""
    print(msg, flush=True)


def print_headlines(row: dict, disp: EventDisplay) -> None:
    """One line per model step of the initiator: AUC and KS on the validation rows (else the training rows)."""
    for s in row["detail"].get("steps", []):
        if s.get("state") != "succeeded" or s.get("party") != row.get("initiator", s.get("party")):
            continue
        res = (s.get("result") or {}).get("result") or {}
        for key in ("validation", "train"):
            m = res.get(key)
            if isinstance(m, dict) and isinstance(m.get("auc"), (int, float)):
                ks = m.get("ks")
                disp.line(f"{s['step']}: {key} AUC {m['auc']:.4f}" +
                          (f", KS {ks:.4f}" if isinstance(ks, (int, float)) else ""))
                break


def print_steps(row: dict, disp: EventDisplay) -> None:
    """The ended steps of a job record: party, step, state, seconds, bytes sent."""
    steps = [s for s in row["detail"].get("steps", []) if s["state"] in ("succeeded", "failed", "cancelled")]
    if not steps:
        return
    disp.line(f"{'party':<10} {'step':<16} {'state':<10} {'seconds':>8} {'sent':>10}")
    for s in steps:
        res = s.get("result") or {}
        traffic = res.get("traffic") or {}
        sent = traffic.get("bytes_sent", res.get("bytes_sent"))
        sec = s.get("seconds")
        sec_text = "" if sec is None else f"{sec:.2f}"
        disp.line(f"{s['party']:<10} {s['step']:<16} {s['state']:<10} {sec_text:>8} "
                  f"{'' if sent is None else human_bytes(sent):>10}")
