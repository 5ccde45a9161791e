"""Messages of vertical logistic regression (one stage per message, through :mod:`fedcredit.protocols._spec`).

Tags: ``setup/<stage>``, ``e-<epoch>/b-<batch>/<stage>`` per mini-batch and ``e-<epoch>/val/<stage>`` for the
validation round of an epoch. Stage names end in the direction (``g`` guest, ``h`` host, ``a`` arbiter):
``grad-ha`` goes from a host to the arbiter.

``coordinated`` (key holder = arbiter; 1 guest + N hosts)::

    setup   guest   → arbiter  ROWS          the number of aligned rows
            arbiter → guest    KEY_AG        arbiter's public key (and to every host: KEY_AH)
    batch   host    → guest    ZH            E(z_h) on the batch rows
            guest   → hosts    D             E(4·d) = E(sum z_h) ⊕ (z_g + 2 - 4y), re-randomized
            host    → arbiter  GRAD_HA       E(X_hᵀ d), packed, + a mask uniform mod n (see _cipher_paillier)
            guest   → arbiter  GRAD_GA       E(X_gᵀ (sum z_h)), packed, + a mask uniform mod n
            arbiter → host     GRAD_PLAIN_AH the masked sums, decrypted (to the guest: GRAD_PLAIN_AG)
    val     host    → guest    ZV            E(z_h) on validation rows, E(|z_h|²)
            guest   → host     ZX            E(z_h') of later hosts (cross terms)
            host    → guest    CROSS         E(<z_h, z_h'>)
            guest   → arbiter  LOSS_GA       E(loss numerator + r)
            arbiter → guest    LOSS_PLAIN_AG loss numerator + r
            guest   → hosts    DECISION_GH   improved? stop?  (to the arbiter: DECISION_GA)

``backend="ckks"``: the same messages with CKKS vectors (rows in slots) and floats instead of Paillier vectors
and ints mod n. The KEY messages carry the public context and rotation keys (steps 1, 2, 4, 8, 16); a Paillier
key travels in the one public-key wire shape of :mod:`fedcredit.protocols._spec`. GRAD carries *one* packed,
masked ciphertext ``[[X_pᵀ v]]`` in the strided layout (blob meta ``stride`` F: slot i holds partial sums for
columns i mod F (real part) and F + i mod F (imaginary part), plus a uniform mask), and the key holder returns
the 2F residue-class sums (GRAD_PLAIN, floats) -- see ``_ckks.py``; ZV's ``sq`` is ``[[z_h ⊙ z_h]]`` per slot,
CROSS is ``[[2 z_h ⊙ sum of later z_h']]`` per slot, LOSS is per-slot masked and LOSS_PLAIN a float.

``two_party`` (no third party; guest and host each hold a key)::

    setup   guest → host   KEY_GH   guest key          host → guest  KEY_HG   host key
            guest → host   WEIGHTS  E_g(q) for every row (weighted runs only: q = round(w 2^16))
    batch   host  → guest  ZH       E_h(z_h)           guest → host  U        E_g(z_g + 2 - 4y)
            host  → guest  GRAD_HG  E_g(X_hᵀ u) (packed, masked)  guest → host  GRAD_GH  E_h(X_gᵀ z_h) (same)
            guest → host   GRAD_PLAIN_GH                host → guest  GRAD_PLAIN_HG
    val     host  → guest  ZV       E_h(z_h), E_h(0)   guest → host  LOSS_GH  E_h(partial numerator + r)
            host  → guest  LOSS_PLAIN_HG (partial + r + |z_h|²)    guest → host  DECISION_GH

The order on each link is checked (flows ``coordinated`` and ``two_party``); in two-party mode guest and host
run the two halves of a round in opposite order (each sends first), so both orders are declared.
"""

from __future__ import annotations

import enum

from .._spec import PUBLIC_KEY, Message, Session, Spec, sequence

__all__ = ["Stage", "SPEC", "session", "MODES", "BACKENDS"]

MODES = ("coordinated", "two_party")
BACKENDS = ("paillier", "ckks")


class Stage(str, enum.Enum):
    """Messages of vertical LR; the value is the message name in the tag."""

    ROWS = "rows"
    KEY_AG = "key-ag"
    KEY_AH = "key-ah"
    KEY_GH = "key-gh"
    KEY_HG = "key-hg"
    WEIGHTS = "weights"
    ZH = "zh"
    D = "d"
    U = "u"
    GRAD_GA = "grad-ga"
    GRAD_HA = "grad-ha"
    GRAD_GH = "grad-gh"
    GRAD_HG = "grad-hg"
    GRAD_PLAIN_AG = "grad-plain-ag"
    GRAD_PLAIN_AH = "grad-plain-ah"
    GRAD_PLAIN_GH = "grad-plain-gh"
    GRAD_PLAIN_HG = "grad-plain-hg"
    ZV = "zv"
    ZX = "zx"
    CROSS = "cross"
    LOSS_GA = "loss-ga"
    LOSS_GH = "loss-gh"
    LOSS_PLAIN_AG = "loss-plain-ag"
    LOSS_PLAIN_HG = "loss-plain-hg"
    DECISION_GA = "decision-ga"
    DECISION_GH = "decision-gh"


_ROLE = {"g": "guest", "h": "host", "a": "arbiter"}
#: a Paillier key in the one wire shape, or (backend="ckks") the public CKKS context with rotation keys
_KEY = {"public_key": ("any", PUBLIC_KEY, dict)}
_PLAIN = {"v": ("any", int, float)}


def _directed(stage: Stage, scope: str, fields) -> Message:
    src, dst = stage.value.rsplit("-", 1)[-1]
    return Message(stage, _ROLE[src], _ROLE[dst], scope, fields)


def _union(*flows: dict) -> dict:
    out: dict = {}
    for fl in flows:
        for a, bs in fl.items():
            out[a] = tuple(dict.fromkeys((*out.get(a, ()), *bs)))
    return out


S = Stage
_COORDINATED = _union(
    # guest <-> arbiter
    sequence(S.ROWS, S.KEY_AG, S.GRAD_GA, S.GRAD_PLAIN_AG, loop_to=S.GRAD_GA),
    sequence(S.LOSS_GA, S.LOSS_PLAIN_AG, S.DECISION_GA, loop_to=S.GRAD_GA),
    {S.GRAD_PLAIN_AG: (S.LOSS_GA,)},
    # host <-> arbiter
    sequence(S.KEY_AH, S.GRAD_HA, S.GRAD_PLAIN_AH, loop_to=S.GRAD_HA),
    # guest <-> host
    sequence(S.ZH, S.D, loop_to=S.ZH),
    sequence(S.ZV, S.ZX, S.CROSS, S.DECISION_GH, loop_to=S.ZH),
    {S.D: (S.ZV,)},
)
_TWO_PARTY = _union(
    # the guest's view of the link, then the host's (each sends its half of a round first)
    sequence(S.KEY_GH, S.KEY_HG, S.WEIGHTS, S.U, S.ZH, S.GRAD_GH, S.GRAD_HG, S.GRAD_PLAIN_GH, S.GRAD_PLAIN_HG,
             loop_to=S.U),
    sequence(S.KEY_HG, S.KEY_GH, S.WEIGHTS, S.ZH, S.U, S.GRAD_HG, S.GRAD_GH, S.GRAD_PLAIN_HG, S.GRAD_PLAIN_GH,
             loop_to=S.ZH),
    {S.KEY_HG: (S.U,), S.KEY_GH: (S.ZH,), S.GRAD_PLAIN_HG: (S.ZV,), S.GRAD_PLAIN_GH: (S.ZV,)},
    sequence(S.ZV, S.LOSS_GH, S.LOSS_PLAIN_HG, S.DECISION_GH),
    {S.DECISION_GH: (S.U, S.ZH)},
)
del S

SPEC = Spec("hetero_lr", [
    Message(Stage.ROWS, "guest", "arbiter", "setup", {"rows": int}),
    *[_directed(s, "setup", _KEY) for s in (Stage.KEY_AG, Stage.KEY_AH, Stage.KEY_GH, Stage.KEY_HG)],
    Message(Stage.WEIGHTS, "guest", "host", "setup", {"q": "blob"}),
    Message(Stage.ZH, "host", "guest", "batch", {"z": "blob"}),
    Message(Stage.D, "guest", "host", "batch", {"d": "blob"}),
    Message(Stage.U, "guest", "host", "batch", {"u": "blob"}),
    *[_directed(s, "batch", {"g": "blob"}) for s in (Stage.GRAD_GA, Stage.GRAD_HA, Stage.GRAD_GH, Stage.GRAD_HG)],
    *[_directed(s, "batch", {"g": list})
      for s in (Stage.GRAD_PLAIN_AG, Stage.GRAD_PLAIN_AH, Stage.GRAD_PLAIN_GH, Stage.GRAD_PLAIN_HG)],
    Message(Stage.ZV, "host", "guest", "val", {"z": "blob", "sq": "blob"}),
    Message(Stage.ZX, "guest", "host", "val", {"z": list}),
    Message(Stage.CROSS, "host", "guest", "val", {"c": "blob"}),
    *[_directed(s, "val", {"v": "blob"}) for s in (Stage.LOSS_GA, Stage.LOSS_GH)],
    *[_directed(s, "val", _PLAIN) for s in (Stage.LOSS_PLAIN_AG, Stage.LOSS_PLAIN_HG)],
    *[_directed(s, "val", {"improved": bool, "stop": bool}) for s in (Stage.DECISION_GA, Stage.DECISION_GH)],
], scopes={"setup": "setup/{stage}", "batch": "e-{e}/b-{b}/{stage}", "val": "e-{e}/val/{stage}"},
    flows={"coordinated": _COORDINATED, "two_party": _TWO_PARTY})


def session(party: str, mode: str, *, guest: str, hosts, arbiter: str | None = None) -> Session:
    """This party's checked end of vertical LR in ``mode`` (``party`` is one of the names given)."""
    roles = {guest: "guest", **{h: "host" for h in hosts}}
    if arbiter is not None:
        roles[arbiter] = "arbiter"
    return SPEC.session(roles, party, flow=mode)
