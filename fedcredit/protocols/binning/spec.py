"""Messages of federated WOE binning (guest = label holder, host = feature holder).

Flow (one host shown; every host runs it in parallel)::

    guest → host  KEY      Paillier public key and the row count
    guest → host  LABELS   E(y_i) for every aligned row (one ciphertext per row);
                           weighted: E(w_i y_i) and E(w_i) (``w`` on the 2**-WEIGHT_BITS grid)
    host  → guest COUNTS   per host feature: rows per bin (plain) and E(events per bin)
                           (weighted: E(weighted events) and E(weighted rows) per bin)
    guest → host  RESULT   per host feature: merge groups (monotonic method), WOE and IV per bin

Tags are ``<stage>`` (the channel is already namespaced to the job and step).
"""

from __future__ import annotations

import enum

from .._expect import Message, check

__all__ = ["Stage", "MESSAGES", "expect", "tag", "WEIGHT_BITS"]

#: Row weights are sent as integers ``round(w * 2**WEIGHT_BITS)``.
WEIGHT_BITS = 16


class Stage(str, enum.Enum):
    KEY = "key"
    LABELS = "labels"
    COUNTS = "counts"
    RESULT = "result"


MESSAGES: dict[Stage, Message] = {
    m.stage: m
    for m in [
        Message(Stage.KEY, "guest", "host", {"public_key": dict, "n_rows": int}),
        Message(Stage.LABELS, "guest", "host", {"labels": "blob", "weights": ("any", "blob", None)}),
        Message(Stage.COUNTS, "host", "guest",
                {"features": list, "n_bins": ("ndarray", "int64"), "totals": ("ndarray", "int64"),
                 "categorical": list, "events": "blob", "weights": ("any", "blob", None)}),
        Message(Stage.RESULT, "guest", "host", {"groups": list, "woe": list, "iv": list}),
    ]
}


def tag(stage: Stage) -> str:
    return stage.value


def expect(stage: Stage, msg, *, sender_role: str | None = None) -> dict:
    """Check a received payload against the spec of ``stage`` (raises ``ProtocolError``)."""
    return check("binning", MESSAGES[stage], msg, sender_role=sender_role)
