"""Messages of vertical SecureBoost, one entry per message.

One guest (the label holder) and N hosts. Per job::

    SETUP (g→h) → SETUP_REPLY (h→g) → [RESUME_PREDICT_REQ → RESUME_PREDICT]

then per tree ``t``::

    START (g→h)                                 tree-<t>/start
    GH (g→h), k = 0 .. gh_parts - 1             tree-<t>/part-<k>/gh   (secure trees only)
      GH_ACK (h→g) after the host took part k   tree-<t>/part-<k>/gh-ack
    for each level d < max_depth, until done:
        HIST_REQ (g→h) → HIST (h→g)             tree-<t>/level-<d>/hist-req, .../hist
        SPLIT_REQ (g→h) → SPLIT (h→g)           tree-<t>/level-<d>/split-req, .../split
    TREE_PREDICT_REQ (g→h) → TREE_PREDICT (h→g) tree-<t>/predict-req, .../predict

and a final START with ``mode="stop"``. Federated scoring of a stored model
is PREDICT_REQ → PREDICT under the caller's namespace.

Every message is declared once in :data:`SPEC` (``protocols/_spec.py``) and
sent and received only through a session (:func:`session`), which derives the
tag and the roles, checks the payload's keys and exact types (``bool`` is not
an ``int``; arrays have the stated dtype and are 1-d) and the order of the
messages with each peer (:data:`TRAINING_FLOW`, :data:`SCORING_FLOW`), and
raises :class:`~fedcredit.errors.ProtocolError` otherwise.

SETUP carries the guest's public key in the one public-key wire shape
(``_spec.PUBLIC_KEY``), which names its additive scheme (``"ou"`` or
``"paillier"``, see :mod:`.he`). The tree's ``(g, h)`` — one ciphertext per
row of the tree, each packing ``(g, h)`` fixed-point — follows START in ``gh_parts`` GH messages
of at most ``SETUP.gh_part_rows`` rows each (:func:`gh_parts`), so no
message grows with the row count beyond the transport's limit: part ``k``
holds the ciphertexts of ``START.rows[k * gh_part_rows : (k + 1) * gh_part_rows]``
and says so (``part``, ``start``); the host checks every part
(:func:`check_gh_part`). The host acknowledges each part once it has taken
it in (GH_ACK); the guest sends part ``k`` to a host only after that host's
acknowledgement of part ``k - GH_WINDOW``, so at most ``GH_WINDOW`` parts wait
in a host's receive buffer however fast the guest encrypts. ``HIST.hist`` carries the node x feature x bin sums,
several per ciphertext ("cipher compression"). ``SPLIT_REQ`` goes with the
rows of the node to the host that won the split (empty to the others);
``SPLIT.left`` is the left/right partition of those rows. No other per-row
information crosses the wire.

The host tracks each secure tree's node partition itself
(:class:`~.partition.NodeTracker`) and answers only requests that fit it: the level-0
HIST_REQ is the tree's root (START.rows), a later one names, per node, a child
of a node split at the previous level (exactly the child, when this host made
the split; a subset of the parent, when the guest or another host did —
which is how the host learns that partition); every node and its sibling hold
at least ``SETUP.min_node_rows`` rows (never fewer than :data:`MIN_NODE_ROWS`),
each node is built and split at most once, and a SPLIT_REQ names nodes of the
current level whose histograms the guest legitimately holds, with exactly
their rows and one (feature, bin) each. Anything else is a ProtocolError.

SETUP_REPLY also carries, per host feature, whether it is categorical (a
categorical feature is split by a set of its bins: SPLIT_REQ then names
``bin = -1`` and the node's left bins in ``left_bins``, CSR by
``left_offsets``; a numeric split has an empty group; see
:func:`check_categorical_reply`), the monotone constraint its owner
declared (``+1``/``-1``/0; the guest enforces it on the decrypted sums) and
the feature's name where the host's policy publishes it (``""`` otherwise:
the guest then calls it ``<host>:feature#<k>``); see :func:`check_setup_reply`.
"""

from __future__ import annotations

import enum

import numpy as np

from ...crypto.blob import CipherBlob
from ...errors import ProtocolError
from .._spec import PUBLIC_KEY, Message, Spec, sequence

__all__ = ["Stage", "SPEC", "SCOPES", "TRAINING_FLOW", "SCORING_FLOW", "session", "MODES", "GH_BITS", "GH_PART_BYTES", "GH_WINDOW",
           "MIN_NODE_ROWS", "MAX_NAME_CHARS", "item_bits", "gh_part_rows", "gh_parts", "check_gh_part",
           "check_setup_reply", "check_categorical_reply", "split_bins"]

#: Fixed-point precision of g and h: values are multiples of 2**-GH_BITS.
GH_BITS = 32
#: Default byte budget of one GH message's ciphertexts (well under ``[transport] max_message_mib = 256``):
#: 131,072 rows a part with a 2048-bit key (512-byte ciphertexts).
GH_PART_BYTES = 64 * 2**20
#: GH parts a guest may have sent to a host that the host has not acknowledged yet.
GH_WINDOW = 2
#: Floor of ``min_node_rows``: a host builds no histogram over fewer rows, directly or as ``parent - sibling``.
#: A one-row node's histogram is that row's bin in every feature of the host; a node of m rows gives per-bin sums
#: of m (g, h) values the guest knows, so a larger m makes solving for bin membership harder (see docs).
MIN_NODE_ROWS = 20
#: Tree modes in START: build with the hosts, build on the guest's features only, or end training.
MODES = ("secure", "guest_only", "stop")


class Stage(str, enum.Enum):
    """Protocol messages; the value is the last part of the tag."""

    SETUP = "setup"
    SETUP_REPLY = "setup-reply"
    RESUME_PREDICT_REQ = "resume-predict-req"
    RESUME_PREDICT = "resume-predict"
    START = "start"
    GH = "gh"
    GH_ACK = "gh-ack"
    HIST_REQ = "hist-req"
    HIST = "hist"
    SPLIT_REQ = "split-req"
    SPLIT = "split"
    TREE_PREDICT_REQ = "tree-predict-req"
    TREE_PREDICT = "tree-predict"
    PREDICT_REQ = "predict-req"
    PREDICT = "predict"


def _arr(dtype):
    return ("ndarray", np.dtype(dtype))


_I64, _BOOL, _U8, _I8 = _arr(np.int64), _arr(np.bool_), _arr(np.uint8), _arr(np.int8)

#: Tag templates: per tree (``t``), per GH part (``k``) and per level (``d``) of a tree. The per-tree scoring round
#: of training keeps the tag of scoring's messages under its tree.
SCOPES = {
    "tree": "tree-{t}/{stage}",
    "part": "tree-{t}/part-{k}/{stage}",
    "level": "tree-{t}/level-{d}/{stage}",
    "tree_predict_req": "tree-{t}/predict-req",
    "tree_predict": "tree-{t}/predict",
}

#: The order of one training run's messages between the guest and one host (either side's view): SETUP, its
#: reply, an optional resume round; per tree START, the GH parts with their acknowledgements (at most
#: ``GH_WINDOW`` unacknowledged), the levels (HIST_REQ, HIST, SPLIT_REQ, SPLIT; a ``done`` HIST_REQ ends early),
#: the tree's predict round; a last START (``stop``) ends the run.
TRAINING_FLOW = sequence(
    Stage.SETUP, Stage.SETUP_REPLY, Stage.RESUME_PREDICT_REQ, Stage.RESUME_PREDICT, Stage.START,
    extra={
        Stage.SETUP_REPLY: (Stage.START,),
        Stage.START: (Stage.GH, Stage.TREE_PREDICT_REQ),
        Stage.GH: (Stage.GH, Stage.GH_ACK),
        Stage.GH_ACK: (Stage.GH, Stage.GH_ACK, Stage.HIST_REQ, Stage.TREE_PREDICT_REQ),
        Stage.HIST_REQ: (Stage.HIST, Stage.TREE_PREDICT_REQ),
        Stage.HIST: (Stage.SPLIT_REQ,),
        Stage.SPLIT_REQ: (Stage.SPLIT,),
        Stage.SPLIT: (Stage.HIST_REQ, Stage.TREE_PREDICT_REQ),
        Stage.TREE_PREDICT_REQ: (Stage.TREE_PREDICT,),
        Stage.TREE_PREDICT: (Stage.START,),
    })
#: Federated scoring of a stored model: one request, one answer.
SCORING_FLOW = sequence(Stage.PREDICT_REQ, Stage.PREDICT)

SPEC = Spec("secureboost", [
    Message(Stage.SETUP, "guest", "host", "job", {
        "run_id": str, "public_key": PUBLIC_KEY, "n_rows": int, "train_rows": _I64, "valid_rows": _I64,
        "max_depth": int, "max_bins": int, "item_bits": int, "resume_trees": int, "gh_part_rows": int,
        "min_node_rows": int,
    }),
    Message(Stage.SETUP_REPLY, "host", "guest", "job", {
        "n_bins_non_missing": _I64, "resume_trees": int, "monotone": _I8, "feature_names": list,
        "categorical": _BOOL,
    }),
    Message(Stage.RESUME_PREDICT_REQ, "guest", "host", "job", {"split_ids": _I64, "rows": _I64}),
    Message(Stage.RESUME_PREDICT, "host", "guest", "job", {"left": _U8}),
    Message(Stage.START, "guest", "host", "tree", {
        "mode": str, "gh_parts": int, "rows": _I64, "features": _BOOL, "keep_trees": int,
    }),
    Message(Stage.GH, "guest", "host", "part", {"part": int, "start": int, "gh": "blob"}),
    Message(Stage.GH_ACK, "host", "guest", "part", {"part": int}),
    Message(Stage.HIST_REQ, "guest", "host", "level", {"done": bool, "nodes": _I64, "offsets": _I64, "rows": _I64}),
    Message(Stage.HIST, "host", "guest", "level", {"hist": ("any", "blob", None), "count": int, "seconds": float}),
    Message(Stage.SPLIT_REQ, "guest", "host", "level", {
        "nodes": _I64, "features": _I64, "bins": _I64, "missing_left": _BOOL, "offsets": _I64, "rows": _I64,
        "left_bins": _I64, "left_offsets": _I64,
    }),
    Message(Stage.SPLIT, "host", "guest", "level", {"split_ids": _I64, "left": _BOOL}),
    Message(Stage.TREE_PREDICT_REQ, "guest", "host", "tree_predict_req", {"split_ids": _I64, "rows": _I64}),
    Message(Stage.TREE_PREDICT, "host", "guest", "tree_predict", {"left": _U8}),
    Message(Stage.PREDICT_REQ, "guest", "host", "job", {"split_ids": _I64, "rows": _I64}),
    Message(Stage.PREDICT, "host", "guest", "job", {"left": _U8}),
], scopes=SCOPES, flows={"training": TRAINING_FLOW, "scoring": SCORING_FLOW})


def session(roles: dict, party: str, flow: str):
    """This party's checked end of a SecureBoost run (``flow``: ``"training"`` or ``"scoring"``)."""
    return SPEC.session(roles, party, flow=flow)


#: Longest feature name a host may publish in SETUP_REPLY.
MAX_NAME_CHARS = 128


def check_setup_reply(msg: dict, host: str, max_bins: int) -> tuple[np.ndarray, list[str]]:
    """Check a SETUP_REPLY (already through the session's payload check); return its monotone signs and published names.

    Raises
    ------
    ProtocolError
        Bin counts out of range, one constraint or name per feature missing, a
        constraint other than -1/0/1, or a name that is not printable text of
        at most :data:`MAX_NAME_CHARS` characters (names reach reports and logs).
    """
    nb, cst, names = msg["n_bins_non_missing"], msg["monotone"], msg["feature_names"]
    if np.any(nb < 1) or np.any(nb > max_bins - 1):
        raise ProtocolError(f"secureboost setup-reply from {host!r}: bin counts out of range")
    if len(cst) != len(nb) or not np.isin(cst, (-1, 0, 1)).all():
        raise ProtocolError(f"secureboost setup-reply from {host!r}: monotone must hold -1, 0 or 1 per feature")
    if len(names) != len(nb) or not all(
        type(x) is str and len(x) <= MAX_NAME_CHARS and x.isprintable() for x in names
    ):
        raise ProtocolError(f"secureboost setup-reply from {host!r}: feature_names must be one printable string "
                            f"of at most {MAX_NAME_CHARS} characters per feature")
    return cst, list(names)


def check_categorical_reply(msg: dict, host: str) -> np.ndarray | None:
    """The categorical flags of a SETUP_REPLY (already through the payload check and :func:`check_setup_reply`).

    Returns None when no feature is categorical.

    Raises
    ------
    ProtocolError
        Not one flag per feature, or a categorical feature with a monotone constraint.
    """
    cat = msg["categorical"]
    if len(cat) != len(msg["n_bins_non_missing"]):
        raise ProtocolError(f"secureboost setup-reply from {host!r}: categorical must hold one flag per feature")
    if np.any(cat & (msg["monotone"] != 0)):
        raise ProtocolError(f"secureboost setup-reply from {host!r}: a categorical feature has a monotone constraint")
    return cat.copy() if cat.any() else None


def split_bins(sreq: dict, k: int, n_bins_non_missing: np.ndarray, categorical: np.ndarray) -> list:
    """Per split of a SPLIT_REQ, its bin (numeric feature) or sorted tuple of left bins (categorical feature).

    ``features`` and ``bins`` must already be checked to have ``k`` entries and
    ``features`` to be this host's feature indexes.

    Raises
    ------
    ProtocolError
        Malformed ``left_offsets``; a numeric split with left bins or a bin out of
        range; a categorical split with ``bin != -1`` or a left set that is
        empty, repeats a bin, or names a bin the feature does not have.
    """
    lb, lo = sreq["left_bins"], sreq["left_offsets"]
    check_offsets(Stage.SPLIT_REQ, lo, k, len(lb))
    out = []
    for i in range(k):
        j, b = int(sreq["features"][i]), int(sreq["bins"][i])
        group = lb[lo[i]:lo[i + 1]]
        nb = int(n_bins_non_missing[j])
        if categorical[j]:
            if b != -1 or len(group) == 0 or len(np.unique(group)) != len(group) or np.any(group < 0) or np.any(
                    group >= nb):
                raise ProtocolError(f"secureboost split-req: malformed category set for feature {j}")
            out.append(tuple(sorted(int(x) for x in group)))
        else:
            if len(group) or not (0 <= b < nb):
                raise ProtocolError(f"secureboost split-req: no feature {j} / bin {b} on this host")
            out.append(b)
    return out


def item_bits(max_rows: int) -> int:
    """Width of one packed ``(G, H)`` sum over at most ``max_rows`` rows: the ``h`` slot (sums of
    ``h <= 2**(GH_BITS - 2)``) plus the signed ``g`` slot above it; the shift of cipher compression.

    A host compresses with exactly this width (it refuses another in SETUP): a wider one would let a guest
    that encrypts crafted values instead of ``(g, h)`` read up to a whole plaintext per histogram sum.
    """
    nb = int(max_rows).bit_length()
    return (GH_BITS - 2 + nb + 1) + (GH_BITS + nb + 2)


def gh_part_rows(width: int, part_rows: int | None = None) -> int:
    """Rows per GH part: ``part_rows`` if given, else as many ``width``-byte ciphertexts as fit in
    :data:`GH_PART_BYTES` (at least one)."""
    if part_rows is not None:
        return int(part_rows)
    return max(1, GH_PART_BYTES // int(width))


def gh_parts(n_rows: int, part_rows: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` within a tree's rows of its GH parts, in order (none for no rows)."""
    return [(lo, min(lo + part_rows, n_rows)) for lo in range(0, int(n_rows), int(part_rows))]


def check_gh_part(msg: dict, k: int, bounds: list[tuple[int, int]]) -> CipherBlob:
    """Check GH part ``msg`` (already through the payload check) received as part ``k`` of ``bounds``; return its blob.

    Raises
    ------
    ProtocolError
        The part says it is another part, starts at another row, or holds another number of
        ciphertexts than its row range (or bytes that are not ``count`` ciphertexts).
    """
    lo, hi = bounds[k]
    if msg["part"] != k:
        raise ProtocolError(f"secureboost gh: part {msg['part']} arrived as part {k} of {len(bounds)} "
                            "(out of order or repeated)")
    if msg["start"] != lo:
        raise ProtocolError(f"secureboost gh: part {k} starts at row {msg['start']}, expected row {lo}")
    gh = msg["gh"]
    if gh.count != hi - lo:
        raise ProtocolError(f"secureboost gh: part {k} holds {gh.count} ciphertexts, expected {hi - lo} "
                            f"(rows {lo}..{hi - 1})")
    if gh.width < 1 or len(gh.data) != gh.width * gh.count:
        raise ProtocolError(f"secureboost gh: part {k} holds {len(gh.data)} bytes, not {gh.count} ciphertexts "
                            f"of {gh.width} bytes")
    return gh


def check_rows(stage: Stage, rows: np.ndarray, n: int, name: str = "rows") -> np.ndarray:
    """Row positions must lie in ``[0, n)``."""
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        raise ProtocolError(f"secureboost {stage.value}: {name} outside [0, {n})")
    return rows


def check_offsets(stage: Stage, offsets: np.ndarray, k: int, total: int) -> np.ndarray:
    """CSR offsets of ``k`` groups over ``total`` items."""
    if len(offsets) != k + 1 or (k >= 0 and len(offsets) and (offsets[0] != 0 or offsets[-1] != total)) or np.any(
        np.diff(offsets) < 0
    ):
        raise ProtocolError(f"secureboost {stage.value}: malformed offsets")
    return offsets


def sent_bins(n_bins_non_missing: np.ndarray, n_bins: int) -> np.ndarray:
    """Layout of one node's histogram in HIST: flat positions (feature-major over the tree's active
    features x ``n_bins``) of the bins a host sends — ``0 .. nb_j - 1`` and the missing bin of each feature.
    Bins no row can fall in are not sent."""
    out = [np.r_[np.arange(nb), n_bins - 1] + j * n_bins for j, nb in enumerate(np.asarray(n_bins_non_missing).tolist())]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)
