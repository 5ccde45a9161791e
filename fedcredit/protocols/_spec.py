"""One message-spec mechanism for every protocol.

A protocol's ``spec.py`` declares its messages once, as :class:`Message`
entries collected in a :class:`Spec` (exposed as ``SPEC``). Handlers then send
and receive only through a :class:`Session` bound to the job's roles::

    class Stage(str, enum.Enum):
        KEY = "key"
        LABELS = "labels"

    SPEC = Spec("binning", [
        Message(Stage.KEY, "guest", "host", "job", {"public_key": PUBLIC_KEY, "n_rows": int}),
        Message(Stage.LABELS, "guest", "host", "round", {"labels": "blob"}),
    ], scopes={"round": "round-{r}/{stage}"}, flow=sequence(Stage.KEY, Stage.LABELS))

    s = SPEC.session(ctx.roles, ctx.party)               # this party's end of every link
    s.send(ch, host, Stage.KEY, {"public_key": encode_public_key(pk), "n_rows": n})
    msg = s.recv(ch, guest, Stage.KEY)                   # checked dict (on the host)
    pk = decode_public_key(msg["public_key"])
    s.recv(ch, guest, Stage.LABELS, r=3)                 # tag "round-3/labels"

What the session derives and checks, so call sites never repeat it:

* **the tag** from the message's scope template and the index keywords
  (``**idx``, exactly the template's placeholders, non-negative ints or
  names); no call site spells a tag or ``Stage.X.value``;
* **the roles**: this party must hold the message's receiver role to receive
  it (sender role to send it), and the peer the other one; a message from a
  party of the wrong role is refused *before* waiting for it;
* **the payload** (on receive): a dict with exactly the declared keys and
  each value of the exact declared type (``bool`` is not an ``int``: Flower's
  ``check_configs``), or, when ``fields`` is not a dict, a single value of that
  type;
* **the order** (Flower's ``check_stage``): per peer, the sequence of messages
  this party sends to and receives from that peer must follow the declared
  flow (``{previous stage or None: allowed next stages}``); a message out of
  order is a :class:`~fedcredit.errors.ProtocolError` raised before anything
  is sent or awaited. The tag-addressed channel already stops a peer from
  reordering what we read; the flow check stops *our* handler from acting on a
  stage it has no business in (e.g. answering an UNMASK before it sent its
  MASKED), which is how a buggy or hostile driver would walk a role off the
  declared protocol.

Field types: a Python type (checked exactly), ``("ndarray", dtype)`` /
``("ndarray2", dtype)`` for a 1-d / 2-d numpy array of that dtype, ``"blob"``
for a :class:`~fedcredit.crypto.blob.CipherBlob`, :data:`PUBLIC_KEY` for the
one public-key wire shape, ``("bytes", k)`` for bytes of a whole number of
``k``-byte items, ``None`` for ``None``, and ``("any", t1, t2, ...)`` for
alternatives.

Public keys have one wire shape: the self-describing dict
``{"scheme": "paillier", "n": bytes}`` or ``{"scheme": "ou", "n": bytes,
"g": bytes, "h": bytes}`` (big-endian), made by :func:`encode_public_key` and
read back, validated, by :func:`decode_public_key`.

Errors name the protocol, stage and peer, never a payload value.
"""

from __future__ import annotations

import enum
import re
import string
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..crypto.blob import CipherBlob
from ..errors import ConfigError, ProtocolError

__all__ = ["Message", "Spec", "Session", "PUBLIC_KEY", "sequence", "encode_public_key", "decode_public_key",
           "check_value"]

#: Field type of a public key in its one wire shape (see :func:`encode_public_key`).
PUBLIC_KEY = "public_key"

_IDX_RE = re.compile(r"^[A-Za-z0-9_.:=-]+$")
_KEY_FIELDS = {"paillier": ("n",), "ou": ("n", "g", "h")}


@dataclass(frozen=True)
class Message:
    """One message of a protocol.

    Parameters
    ----------
    stage : enum member
        The message's stage (its value is the message name in the tag).
    sender, receiver : str
        Exactly one role each.
    scope : str or None, default="job"
        Name of the tag template in :attr:`Spec.scopes`; ``None`` for a
        message that travels as a field of another one (no tag of its own;
        checked with :meth:`Session.check`).
    fields : dict or field type, default=None
        Payload: a dict with exactly these keys and exact value types, or
        (not a dict) the type of the whole payload.
    notice : str, optional
        A bool field: when a payload has it ``True`` it must consist of that
        field alone (e.g. ``{"dropped": True}``).
    """

    stage: enum.Enum
    sender: str
    receiver: str
    scope: str | None = "job"
    fields: Any = None
    notice: str | None = None


def sequence(*stages, loop_to=None, extra: Mapping | None = None) -> dict:
    """A flow that runs ``stages`` in order (then back to ``loop_to``, if given).

    ``extra`` adds edges: ``{stage or None: (next stages...)}``.
    """
    flow: dict = {}

    def add(a, b):
        flow[a] = tuple(dict.fromkeys((*flow.get(a, ()), b)))

    prev = None
    for s in stages:
        add(prev, s)
        prev = s
    if loop_to is not None and prev is not None:
        add(prev, loop_to)
    for a, bs in (extra or {}).items():
        for b in bs:
            add(a, b)
    return flow


def check_value(value, exp) -> bool:
    """True iff ``value`` has the exact field type ``exp`` (see the module docstring)."""
    if exp is None:
        return value is None
    if exp == "blob":
        return isinstance(value, CipherBlob)
    if exp == PUBLIC_KEY:
        return _key_shape_ok(value)
    if isinstance(exp, tuple) and exp:
        if exp[0] == "any":
            return any(check_value(value, e) for e in exp[1:])
        if exp[0] == "bytes":
            return type(value) is bytes and len(value) % exp[1] == 0
        ndim = 2 if exp[0] == "ndarray2" else 1
        return isinstance(value, np.ndarray) and value.dtype == np.dtype(exp[1]) and value.ndim == ndim
    if isinstance(exp, type):
        return type(value) is exp
    raise TypeError(f"not a field type: {exp!r}")


def _type_name(exp) -> str:
    if exp is None:
        return "None"
    if exp == "blob":
        return "CipherBlob"
    if exp == PUBLIC_KEY:
        return "a public key"
    if isinstance(exp, tuple) and exp:
        if exp[0] == "any":
            return " or ".join(_type_name(e) for e in exp[1:])
        if exp[0] == "bytes":
            return f"bytes of whole {exp[1]}-byte items"
        return f"{2 if exp[0] == 'ndarray2' else 1}-d {np.dtype(exp[1]).name} array"
    return exp.__name__


def _key_shape_ok(value) -> bool:
    if type(value) is not dict or value.get("scheme") not in _KEY_FIELDS:
        return False
    names = _KEY_FIELDS[value["scheme"]]
    return set(value) == {"scheme", *names} and all(type(value[k]) is bytes and value[k] for k in names)


def encode_public_key(pk) -> dict:
    """The one wire shape of a Paillier or OU public key (a dict of ``scheme`` and big-endian bytes)."""
    w = pk.to_wire()
    if not _key_shape_ok(w):
        raise ConfigError(f"not a Paillier or OU public key: {type(pk).__name__}")
    return w


def decode_public_key(value, *, schemes: Iterable[str] = ("paillier", "ou"), protocol: str = "protocol"):
    """A Paillier or OU public key from its wire shape; refuses other schemes, malformed or too-small keys.

    Raises
    ------
    ProtocolError
        Not the wire shape, a scheme outside ``schemes``, or an invalid key
        (e.g. too small a modulus, OU ``h != g^n``).
    """
    if not _key_shape_ok(value):
        raise ProtocolError(f"{protocol}: the public key is not in the public-key wire shape")
    scheme = value["scheme"]
    if scheme not in tuple(schemes):
        raise ProtocolError(f"{protocol}: public key scheme {scheme!r} is not accepted here")
    if scheme == "paillier":
        from ..crypto.paillier import PublicKey
    else:
        from ..crypto.ou import PublicKey
    try:
        return PublicKey.from_wire(value)
    except ConfigError as exc:
        raise ProtocolError(f"{protocol}: not a valid {scheme} public key ({exc})") from None


class Spec:
    """All messages of one protocol, their tag templates and allowed order.

    Parameters
    ----------
    protocol : str
        Name used in error messages (``"binning"``).
    messages : iterable of Message
        One entry per stage.
    scopes : dict of str to str, optional
        Tag templates by scope name, with ``{stage}`` and index placeholders
        (``"round-{r}/{stage}"``). ``"job"`` (``"{stage}"``) is always defined.
    flow : dict, optional
        The default flow (see :func:`sequence`); ``None`` checks no order.
    flows : dict of str to dict, optional
        Named flows (e.g. per mode), chosen in :meth:`session`.
    """

    def __init__(self, protocol: str, messages: Iterable[Message], *, scopes: Mapping[str, str] | None = None,
                 flow: Mapping | None = None, flows: Mapping[str, Mapping] | None = None):
        self.protocol = protocol
        self.messages: dict[enum.Enum, Message] = {}
        for m in messages:
            if m.stage in self.messages:
                raise ValueError(f"{protocol}: stage {m.stage!r} declared twice")
            self.messages[m.stage] = m
        self.scopes = {"job": "{stage}", **(scopes or {})}
        self.flows: dict[str | None, Mapping] = dict(flows or {})
        if flow is not None:
            self.flows[None] = flow
        for m in self.messages.values():
            if m.scope is not None and m.scope not in self.scopes:
                raise ValueError(f"{protocol}: stage {m.stage!r} has unknown scope {m.scope!r}")
        for fl in self.flows.values():
            for a, bs in fl.items():
                for s in (a, *bs):
                    if s is not None and s not in self.messages:
                        raise ValueError(f"{protocol}: flow names undeclared stage {s!r}")

    def __getitem__(self, stage) -> Message:
        return self.messages[stage]

    def tag(self, stage, **idx) -> str:
        """The wire tag of ``stage`` at index ``idx`` (exactly the scope template's placeholders)."""
        m = self.messages[stage]
        if m.scope is None:
            raise ProtocolError(f"{self.protocol} {_v(stage)}: travels inside another message and has no tag")
        template = self.scopes[m.scope]
        need = {f for _, f, _, _ in string.Formatter().parse(template) if f and f != "stage"}
        if set(idx) != need:
            raise ProtocolError(f"{self.protocol} {_v(stage)}: tag index must be {sorted(need)}, got {sorted(idx)}")
        for k, v in idx.items():
            ok = (type(v) is int and v >= 0) or (type(v) is str and _IDX_RE.fullmatch(v) and v not in (".", ".."))
            if not ok:
                raise ProtocolError(f"{self.protocol} {_v(stage)}: tag index {k!r} must be an int >= 0 or a name")
        return template.format(stage=_v(stage), **idx)

    def check(self, stage, value, *, sender_role: str | None = None, peer: str | None = None):
        """Validate a received payload against the spec of ``stage``; return it.

        Raises
        ------
        ProtocolError
            Wrong sender role, not the payload type, missing or unexpected
            keys, or a value of the wrong exact type.
        """
        m = self.messages[stage]
        where = f"{self.protocol} {_v(stage)}" + (f" from {peer!r}" if peer is not None else "")
        if sender_role is not None and sender_role != m.sender:
            raise ProtocolError(f"{where}: sent by a {sender_role}, expected the {m.sender}")
        if not isinstance(m.fields, dict):
            if not check_value(value, m.fields):
                raise ProtocolError(f"{where}: payload must be {_type_name(m.fields)}, got {type(value).__name__}")
            return value
        if type(value) is not dict:
            raise ProtocolError(f"{where}: payload is {type(value).__name__}, expected dict")
        allowed = set(m.fields)
        if m.notice is not None and value.get(m.notice) is True:
            allowed = {m.notice}  # a notice carries nothing else
        missing = allowed - set(value)
        extra = set(value) - allowed
        if missing or extra:
            raise ProtocolError(f"{where}: missing keys {sorted(missing)}, unexpected keys {sorted(map(str, extra))}")
        for k in value:
            exp = m.fields[k]
            if not check_value(value[k], exp):
                raise ProtocolError(f"{where}: {k!r} must be {_type_name(exp)}, got {type(value[k]).__name__}")
        return value

    def session(self, roles: Mapping[str, str], party: str, *, flow: str | None = None) -> "Session":
        """This party's end of the protocol: sends and receives checked against roles, payloads and order.

        ``flow`` names one of :attr:`flows` (``None``: the default flow, if any).
        """
        if flow is not None and flow not in self.flows:
            raise ValueError(f"{self.protocol}: unknown flow {flow!r}")
        return Session(self, roles, party, self.flows.get(flow))


class Session:
    """One party's checked endpoint of a protocol (see :meth:`Spec.session`)."""

    def __init__(self, spec: Spec, roles: Mapping[str, str], party: str, flow: Mapping | None):
        self.spec = spec
        self.roles = dict(roles)
        self.party = party
        self.role = self.roles.get(party)
        self.flow = flow
        self._at: dict[str, Any] = {}
        self._lock = threading.Lock()

    def stage_with(self, peer: str):
        """The last stage exchanged with ``peer`` (``None`` before the first)."""
        with self._lock:
            return self._at.get(peer)

    def _step(self, peer: str, stage, *, sending: bool) -> Message:
        spec = self.spec
        m = spec.messages.get(stage)
        if m is None:
            raise ProtocolError(f"{spec.protocol}: unknown stage {stage!r}")
        me, other = (m.sender, m.receiver) if sending else (m.receiver, m.sender)
        if self.role != me:
            raise ProtocolError(f"{spec.protocol} {_v(stage)}: a {self.role} cannot "
                                f"{'send' if sending else 'receive'} it (the {me} does)")
        peer_role = self.roles.get(peer)
        if peer_role != other:
            raise ProtocolError(f"{spec.protocol} {_v(stage)}: {'to' if sending else 'from'} {peer!r}, a "
                                f"{peer_role}, expected the {other}")
        if self.flow is not None:
            with self._lock:
                prev = self._at.get(peer)
                if stage not in self.flow.get(prev, ()):
                    after = "first" if prev is None else f"after {_v(prev)}"
                    raise ProtocolError(f"{spec.protocol}: {_v(stage)} with {peer!r} out of order ({after})")
                self._at[peer] = stage
        return m

    def send(self, ch, peer: str, stage, value, **idx) -> None:
        """Send ``value`` as ``stage`` to ``peer`` under the derived tag."""
        tag = self.spec.tag(stage, **idx)
        self._step(peer, stage, sending=True)
        ch.send(peer, tag, value)

    def broadcast(self, ch, peers: Iterable[str], stage, value, **idx) -> None:
        """:meth:`send` the same ``value`` to each of ``peers``."""
        for p in peers:
            self.send(ch, p, stage, value, **idx)

    def recv(self, ch, peer: str, stage, *, timeout: float | None = None, **idx):
        """Receive ``stage`` from ``peer`` and return its checked payload.

        Raises
        ------
        ProtocolError
            ``peer`` does not hold the sender role, the message is out of
            order, or the payload does not match the spec.
        PeerError
            As :meth:`~fedcredit.transport.base.Channel.recv`.
        """
        tag = self.spec.tag(stage, **idx)
        self._step(peer, stage, sending=False)
        value = ch.recv(peer, tag) if timeout is None else ch.recv(peer, tag, timeout)
        return self.spec.check(stage, value, peer=peer)

    def gather(self, ch, peers: Iterable[str], stage, *, timeout: float | None = None, **idx) -> dict:
        """:meth:`recv` ``stage`` from each of ``peers``; ``{peer: payload}``."""
        return {p: self.recv(ch, p, stage, timeout=timeout, **idx) for p in peers}

    def check(self, peer: str, stage, value):
        """Check a message that travels inside another one (scope ``None``) as received from ``peer``."""
        self._step(peer, stage, sending=False)
        return self.spec.check(stage, value, peer=peer)

    def note_sent(self, peer: str, stage) -> None:
        """Record that a tagless message (scope ``None``) was sent to ``peer`` inside another one."""
        self._step(peer, stage, sending=True)


def _v(stage) -> str:
    return getattr(stage, "value", str(stage))
