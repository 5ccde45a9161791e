"""Messages of vertical logistic regression.

Tags: ``setup/<stage>``, ``e-<epoch>/b-<batch>/<stage>`` per mini-batch and
``e-<epoch>/val/<stage>`` for the validation round of an epoch.

``coordinated`` (key holder = arbiter; 1 guest + N hosts)::

    setup   arbiter → guest, hosts   PUBKEY      arbiter's Paillier public key
    batch   host    → guest          ZH          E(z_h) on the batch rows
            guest   → hosts          D           E(4·d) = E(sum z_h) ⊕ (z_g + 2 - 4y), re-randomized
            host    → arbiter        GRAD        E(X_hᵀ d + m_h)   (m_h uniform mod n)
            guest   → arbiter        GRAD        E(X_gᵀ (sum z_h) + m_g)
            arbiter → host, guest    GRAD_PLAIN  the masked sums, decrypted
    val     host    → guest          ZV          E(z_h) on validation rows, E(|z_h|²)
            guest   → host           ZX          E(z_h') of later hosts (cross terms)
            host    → guest          CROSS       E(<z_h, z_h'>)
            guest   → arbiter        LOSS        E(loss numerator + r)
            arbiter → guest          LOSS_PLAIN  loss numerator + r
            guest   → hosts          DECISION    improved? stop?

``backend="ckks"``: the same messages with CKKS vectors (rows in slots) and
floats instead of Paillier vectors and ints mod n. PUBKEY carries the public
context and rotation keys (steps 1, 2, 4, 8, 16). GRAD carries *one* packed,
masked ciphertext ``[[X_pᵀ v]]`` in the strided layout (blob meta ``stride`` F:
slot i holds partial sums for columns i mod F (real part) and F + i mod F
(imaginary part), plus a uniform mask), and the key holder returns the 2F
residue-class sums (GRAD_PLAIN, floats) -- see
``_ckks.py``; ZV's ``sq`` is ``[[z_h ⊙ z_h]]`` per slot, CROSS is ``[[2 z_h ⊙
sum of later z_h']]`` per slot, LOSS is per-slot masked and LOSS_PLAIN a float.

``two_party`` (no third party; guest and host each hold a key)::

    setup   guest → host   PUBKEY  guest key        host → guest  PUBKEY  host key
            guest → host   WEIGHTS E_g(q) for every row (weighted runs only: q = round(w 2^16))
    batch   host  → guest  ZH      E_h(z_h)         guest → host  U       E_g(z_g + 2 - 4y)
            host  → guest  GRAD    E_g(X_hᵀ u + m_h) guest → host  GRAD    E_h(X_gᵀ z_h + m_g)
            guest → host   GRAD_PLAIN               host → guest  GRAD_PLAIN
    val     host  → guest  ZV      E_h(z_h), E_h(0) guest → host  LOSS    E_h(partial numerator + r)
            host  → guest  LOSS_PLAIN (partial + r + |z_h|²)      guest → host DECISION
"""

from __future__ import annotations

import enum

from .._expect import Message, check

__all__ = ["Stage", "MESSAGES", "expect", "send", "recv", "MODES", "BACKENDS"]

MODES = ("coordinated", "two_party")
BACKENDS = ("paillier", "ckks")


class Stage(str, enum.Enum):
    PUBKEY = "pubkey"
    ZH = "zh"
    D = "d"
    U = "u"
    GRAD = "grad"
    GRAD_PLAIN = "grad-plain"
    ZV = "zv"
    ZX = "zx"
    CROSS = "cross"
    LOSS = "loss"
    LOSS_PLAIN = "loss-plain"
    DECISION = "decision"
    WEIGHTS = "weights"


_MSGS = [
    Message(Stage.PUBKEY, "arbiter|guest|host", "guest|host", {"public_key": dict}),
    Message(Stage.ZH, "host", "guest", {"z": "blob"}),
    Message(Stage.D, "guest", "host", {"d": "blob"}),
    Message(Stage.U, "guest", "host", {"u": "blob"}),
    Message(Stage.GRAD, "guest|host", "arbiter|guest|host", {"g": "blob"}),
    Message(Stage.GRAD_PLAIN, "arbiter|guest|host", "guest|host", {"g": list}),
    Message(Stage.ZV, "host", "guest", {"z": "blob", "sq": "blob"}),
    Message(Stage.ZX, "guest", "host", {"z": list}),
    Message(Stage.CROSS, "host", "guest", {"c": "blob"}),
    Message(Stage.LOSS, "guest", "arbiter|host", {"v": "blob"}),
    Message(Stage.LOSS_PLAIN, "arbiter|host", "guest", {"v": ("any", int, float)}),
    Message(Stage.DECISION, "guest", "host|arbiter", {"improved": bool, "stop": bool}),
    Message(Stage.WEIGHTS, "guest", "host", {"q": "blob"}),
]
MESSAGES: dict[Stage, Message] = {m.stage: m for m in _MSGS}


def expect(stage: Stage, msg, *, sender_role: str | None = None) -> dict:
    """Check a received payload against the spec of ``stage`` (raises ``ProtocolError``)."""
    spec = MESSAGES[stage]
    if sender_role is not None and sender_role not in spec.sender.split("|"):
        from ...errors import ProtocolError

        raise ProtocolError(f"hetero_lr {stage.value}: sent by a {sender_role}, expected {spec.sender}")
    return check("hetero_lr", spec, msg)


def send(ch, peer: str, stage: Stage, value) -> None:
    """Send ``value`` to ``peer`` under ``stage``'s tag."""
    ch.send(peer, stage.value, value)


def recv(ch, peer: str, stage: Stage, sender_role: str) -> dict:
    """Receive ``stage`` from ``peer`` (a ``sender_role``) and check it against the spec."""
    return expect(stage, ch.recv(peer, stage.value), sender_role=sender_role)
