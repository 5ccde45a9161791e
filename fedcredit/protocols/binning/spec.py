"""Messages of federated WOE binning (guest = label holder, host = feature holder).

Flow (one host shown; every host runs it in parallel)::

    guest → host  KEY      Paillier or OU public key (the step's ``he``) and the row count
    guest → host  LABELS   E(y_i) for every aligned row (one ciphertext per row);
                           weighted: E(w_i y_i) and E(w_i) (``w`` on the 2**-WEIGHT_BITS grid)
    host  → guest COUNTS   per host feature: rows per bin (plain) and E(events per bin)
                           (weighted: E(weighted events) and E(weighted rows) per bin)
    guest → host  RESULT   per host feature: merge groups (monotonic method), WOE and IV per bin

Tags are ``<stage>`` (the channel is already namespaced to the job and step). The public key travels in
the one public-key wire shape of :mod:`fedcredit.protocols._spec`.
"""

from __future__ import annotations

import enum

from .._spec import PUBLIC_KEY, Message, Session, Spec, sequence

__all__ = ["Stage", "SPEC", "WEIGHT_BITS"]

#: Row weights are sent as integers ``round(w * 2**WEIGHT_BITS)``.
WEIGHT_BITS = 16


class Stage(str, enum.Enum):
    KEY = "key"
    LABELS = "labels"
    COUNTS = "counts"
    RESULT = "result"


SPEC = Spec("binning", [
    Message(Stage.KEY, "guest", "host", "job", {"public_key": PUBLIC_KEY, "n_rows": int}),
    Message(Stage.LABELS, "guest", "host", "job", {"labels": "blob", "weights": ("any", "blob", None)}),
    Message(Stage.COUNTS, "host", "guest", "job",
            {"features": list, "n_bins": ("ndarray", "int64"), "totals": ("ndarray", "int64"),
             "categorical": list, "events": "blob", "weights": ("any", "blob", None)}),
    Message(Stage.RESULT, "guest", "host", "job", {"groups": list, "woe": list, "iv": list}),
], flow=sequence(Stage.KEY, Stage.LABELS, Stage.COUNTS, Stage.RESULT))


def session(party: str, guest: str, hosts) -> Session:
    """This party's checked end of binning (guest ``guest``, hosts ``hosts``)."""
    return SPEC.session({guest: "guest", **{h: "host" for h in hosts}}, party)
