"""What a party that rewrites its own audit log does: change one record and re-chain every hash after it."""

from __future__ import annotations

import json

from fedcredit.audit import canonical_json, record_hash


def rewrite_record(path, seq_to_change: int) -> None:
    """Change record ``seq_to_change`` and recompute every hash after it: a log that verifies on its own."""
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    prev = recs[seq_to_change - 2]["hash"] if seq_to_change > 1 else "0" * 64
    for r in recs[seq_to_change - 1:]:
        if r["seq"] == seq_to_change:
            r["fields"]["tampered"] = True
        r["prev"] = prev
        r["hash"] = record_hash(r)
        prev = r["hash"]
    path.write_text("".join(canonical_json(r) + "\n" for r in recs))
