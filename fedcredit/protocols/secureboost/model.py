"""Per-party parts of a SecureBoost model (DESIGN §4.7) and their JSON files.

* The guest holds every tree's structure and leaf weights. A node it splits on
  its own feature carries the threshold; a node split by a host carries only
  ``(party, split_id)`` — a reference into that host's table.
* A host holds only its lookup table ``split_id → (feature, threshold,
  missing_left)`` (for a categorical feature: the category codes going left
  and right instead of a threshold); it knows neither the tree structure nor
  any leaf weight.

Both are kept as JSON (``sbt_guest.json`` / ``sbt_host.json``) in the
step's artifacts (``ctx.artifacts.save_json``; on a party, files written
atomically, so a killed job leaves the last finished tree's checkpoint
intact). :meth:`GuestModel.load`/``save`` read and write such a file by path
for tools and tests, through :mod:`fedcredit.artifacts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...artifacts import read_json, write_json
from ...errors import DataError
from ...models.tree.grower import Node

__all__ = ["GuestModel", "HostModel", "HostSplit", "GUEST_FILE", "HOST_FILE"]

GUEST_FILE = "sbt_guest.json"
HOST_FILE = "sbt_host.json"
_VERSION = 1


def _check_part(d: dict, role: str, where: str = "model part") -> dict:
    """``d`` if it is a SecureBoost ``role`` part of this version, else DataError naming ``where``."""
    if not isinstance(d, dict) or d.get("version") != _VERSION:
        raise DataError(f"{where}: not a SecureBoost model part of version {_VERSION}")
    if d.get("role") != role:
        raise DataError(f"{where}: not a {role} model part")
    return d


@dataclass
class GuestModel:
    """The label holder's part.

    Attributes
    ----------
    party : str
        The guest's name.
    hosts : list of str
    feature_names : list of str
        The guest's own features (``feature`` of guest nodes indexes them).
    base_score : float
        Initial log-odds.
    trees : list of list of Node
    params : dict
        Training hyperparameters (for the report and resume checks).
    run_id : str
        Identifies the training run (resume only continues the same run): an
        HMAC under ``run_key`` of the parameters, rows and labels, so hosts
        (who receive it) cannot test guesses of the labels against it.
    validation_seed : int or None
        The secret seed of the validation split (drawn from ``secrets`` by the
        guest, never sent); ``GBDTReference(validation_seed=...)`` reproduces
        the run. Kept so a resumed run draws the same split.
    run_key : str
        Hex key of the run id's HMAC (the guest's secret, never sent).
    host_feature_names : dict of str to list of str
        Per host, the name of each of its features as the guest may show it:
        the name the host published, else ``<host>:feature#k``.
    importance : list of dict
        Split count and total gain per feature of every party
        (:func:`~fedcredit.models.tree.importance.feature_importance`).
    """

    party: str
    hosts: list
    feature_names: list
    base_score: float
    trees: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    run_id: str = ""
    validation_seed: int | None = None
    run_key: str = ""
    host_feature_names: dict = field(default_factory=dict)
    importance: list = field(default_factory=list)

    @property
    def n_trees(self) -> int:
        return len(self.trees)

    def host_split_ids(self, host: str, trees=None) -> list[int]:
        """Split ids of ``host`` referenced by ``trees`` (default: all), in tree order."""
        out = []
        for nodes in self.trees if trees is None else trees:
            out += [n.split_id for n in nodes if not n.is_leaf and n.party == host]
        return out

    def to_dict(self) -> dict:
        return {
            "version": _VERSION, "role": "guest", "party": self.party, "hosts": list(self.hosts),
            "feature_names": list(self.feature_names), "base_score": self.base_score, "params": self.params,
            "run_id": self.run_id, "validation_seed": self.validation_seed, "run_key": self.run_key,
            "trees": [[n.to_dict() for n in nodes] for nodes in self.trees],
            "host_feature_names": {h: list(v) for h, v in self.host_feature_names.items()},
            "importance": list(self.importance),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "GuestModel":
        return cls(
            party=d["party"], hosts=list(d["hosts"]), feature_names=list(d["feature_names"]),
            base_score=float(d["base_score"]), params=dict(d.get("params", {})), run_id=d.get("run_id", ""),
            validation_seed=d.get("validation_seed"), run_key=d.get("run_key", ""),
            trees=[[Node.from_dict(n) for n in nodes] for nodes in d["trees"]],
            host_feature_names={h: list(v) for h, v in d.get("host_feature_names", {}).items()},
            importance=list(d.get("importance", [])),
        )

    @classmethod
    def from_part(cls, d: dict, where: str = "model part") -> "GuestModel":
        """From a saved part (e.g. ``ctx.artifacts.load_json``), checked for version and role."""
        return cls.from_dict(_check_part(d, "guest", where))

    def save(self, path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "GuestModel":
        return cls.from_part(read_json(path, "SecureBoost model part"), str(path))


@dataclass
class HostSplit:
    """One entry of a host's lookup table."""

    tree: int
    feature: int
    threshold: float | None  # None for a categorical split
    missing_left: bool
    feature_name: str = ""
    left_categories: list | None = None  # categorical split: the category codes going left ...
    right_categories: list | None = None  # ... and right (others, and NaN, follow missing_left)


@dataclass
class HostModel:
    """A host's part: its split lookup table.

    Attributes
    ----------
    party, guest : str
    feature_names : list of str
        This host's features (``HostSplit.feature`` indexes them).
    splits : dict of int to HostSplit
    trees_done : int
        Trees finished (checkpoint counter).
    run_id : str
    """

    party: str
    guest: str
    feature_names: list
    splits: dict = field(default_factory=dict)
    trees_done: int = 0
    run_id: str = ""

    def importance(self) -> list[dict]:
        """This host's own importance: per feature, the splits of the model on it (the host knows no gains)."""
        counts = [0] * len(self.feature_names)
        for s in self.splits.values():
            if 0 <= s.feature < len(counts):
                counts[s.feature] += 1
        return [{"feature": name, "splits": c} for name, c in zip(self.feature_names, counts)]

    def truncate(self, n_trees: int) -> None:
        """Forget the splits of trees ``>= n_trees``."""
        self.splits = {k: s for k, s in self.splits.items() if s.tree < n_trees}
        self.trees_done = min(self.trees_done, n_trees)

    def to_dict(self) -> dict:
        return {
            "version": _VERSION, "role": "host", "party": self.party, "guest": self.guest,
            "feature_names": list(self.feature_names), "trees_done": self.trees_done, "run_id": self.run_id,
            "splits": {str(k): s.__dict__ for k, s in sorted(self.splits.items())},
            "importance": self.importance(),  # derived (not read back): for the party's own report
        }

    @classmethod
    def from_dict(cls, d: dict) -> "HostModel":
        return cls(
            party=d["party"], guest=d["guest"], feature_names=list(d["feature_names"]),
            trees_done=int(d.get("trees_done", 0)), run_id=d.get("run_id", ""),
            splits={int(k): HostSplit(**v) for k, v in d["splits"].items()},
        )

    @classmethod
    def from_part(cls, d: dict, where: str = "model part") -> "HostModel":
        """From a saved part (e.g. ``ctx.artifacts.load_json``), checked for version and role."""
        return cls.from_dict(_check_part(d, "host", where))

    def save(self, path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "HostModel":
        return cls.from_part(read_json(path, "SecureBoost model part"), str(path))
