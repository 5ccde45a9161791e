"""Model parts as the scoring service loads them from a training step's artifacts.

* SecureBoost: ``sbt_guest.json`` / ``sbt_host.json`` (kept by the secureboost step).
* Hetero LR: ``lr_part.json`` (kept by the hetero_lr step as :func:`lr_part_dict`):
  this party's features, preprocessing (standardizer, WOE bins or one-hot
  category lists), coefficients (one per design column),
  the intercept on the guest, and the parties of the model.

No file is opened here: steps keep parts through ``ctx.artifacts``, and the
loaders read a finished step's directory through :mod:`fedcredit.artifacts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...artifacts import FileArtifacts, read_json
from ...errors import DataError
from ..secureboost.model import GUEST_FILE, HOST_FILE, GuestModel, HostModel
from .spec import Kind

__all__ = ["LR_FILE", "ModelPart", "lr_part_dict", "save_lr_part", "load_lr_part", "load_part"]

LR_FILE = "lr_part.json"
_LR_VERSION = 1


def lr_part_dict(part: dict, *, party: str, role: str, guest: str, hosts) -> dict:
    """A hetero_lr model part as saved (JSON-able). ``part`` is the step's ``ctx.state["hetero_lr"]``."""
    from ...models.woe import Bins  # noqa: F401 - bins are serialized with their own to_dict

    d: dict[str, Any] = {"version": _LR_VERSION, "kind": Kind.HETERO_LR.value, "party": party, "role": role,
                         "guest": guest, "hosts": list(hosts), "features": list(part["features"]),
                         "preprocess": part["preprocess"], "coef": [float(c) for c in part["coef"]],
                         "intercept": float(part.get("intercept", 0.0))}
    if part["preprocess"] == "woe":
        d["bins"] = {f: b.to_dict() for f, b in part["bins"].items()}
    elif part["preprocess"] == "onehot":  # category lists stay in this party's own part file
        d["onehot"] = part["onehot"]
    else:
        d["standardizer"] = part["standardizer"]
    return d


def save_lr_part(artifacts, part: dict, *, party: str, role: str, guest: str, hosts) -> str:
    """Keep a hetero_lr model part as :data:`LR_FILE` in ``artifacts`` (e.g. ``FileArtifacts(step_dir)``)."""
    return artifacts.save_json(LR_FILE, lr_part_dict(part, party=party, role=role, guest=guest, hosts=hosts))


def load_lr_part(path) -> dict:
    """Read ``lr_part.json``; WOE bins come back as :class:`~fedcredit.models.woe.Bins`."""
    from ...models.woe import Bins

    d = read_json(path, "hetero_lr model part")
    if d.get("version") != _LR_VERSION or d.get("kind") != Kind.HETERO_LR.value:
        raise DataError(f"{path}: not a hetero_lr model part of version {_LR_VERSION}")
    if d["preprocess"] == "woe":
        d["bins"] = {f: Bins.from_dict(b) for f, b in d["bins"].items()}
    return d


@dataclass
class ModelPart:
    """One party's part of a trained model.

    Attributes
    ----------
    model_id : str
    kind : Kind
    role : {"guest", "host"}
    party, guest : str
    hosts : list of str
    features : list of str
        This party's features the part reads (namespaced ``party.column``).
    model : GuestModel, HostModel or dict
        The SecureBoost part, or the LR part dict.
    path : Path
    """

    model_id: str
    kind: Kind
    role: str
    party: str
    guest: str
    hosts: list
    features: list
    model: Any
    path: Path
    extra: dict = field(default_factory=dict)


def load_part(workdir, model_id: str) -> ModelPart:
    """Load this party's part of ``model_id`` from the step's ``workdir`` (DataError if there is none)."""
    wd = Path(workdir)
    store = FileArtifacts(wd)
    if (d := store.load_json(GUEST_FILE)) is not None:
        m = GuestModel.from_part(d, str(wd / GUEST_FILE))
        return ModelPart(model_id, Kind.SECUREBOOST, "guest", m.party, m.party, list(m.hosts),
                         list(m.feature_names), m, wd / GUEST_FILE)
    if (d := store.load_json(HOST_FILE)) is not None:
        m = HostModel.from_part(d, str(wd / HOST_FILE))
        if m.trees_done:
            m.truncate(m.trees_done)  # splits of an unfinished tree are never referenced
        return ModelPart(model_id, Kind.SECUREBOOST, "host", m.party, m.guest, [], list(m.feature_names), m,
                         wd / HOST_FILE)
    if store.load_json(LR_FILE) is not None:
        d = load_lr_part(wd / LR_FILE)
        return ModelPart(model_id, Kind.HETERO_LR, d["role"], d["party"], d["guest"], list(d["hosts"]),
                         list(d["features"]), d, wd / LR_FILE)
    raise DataError(f"no model part of {model_id!r} on this party (looked for {GUEST_FILE}, {HOST_FILE}, "
                    f"{LR_FILE} in {wd})")
