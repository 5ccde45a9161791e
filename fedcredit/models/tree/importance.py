"""Feature importance of grown trees: split count and total gain per feature.

Works on the stored :class:`~fedcredit.models.tree.grower.Node` lists of the
reference and of the federated label holder alike. A node records the party
owning its split (``party``), that party's local feature index (``feature``)
and the split's gain (``gain``, the score of ``split.py``: the loss reduction
times two), so the label holder can rank every party's features without
knowing a host feature's name or values: what it reports for a host feature is
what it already holds (its index, its splits and their gains).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["feature_importance", "host_feature_label"]


def host_feature_label(host: str, k: int) -> str:
    """How the label holder names host ``host``'s feature ``k`` when the host publishes no name."""
    return f"{host}:feature#{int(k)}"


def feature_importance(trees: Sequence[Sequence], names: Mapping[str, Sequence[str]] | None = None) -> list[dict]:
    """Split count and total gain per (party, feature), most total gain first.

    Parameters
    ----------
    trees : list of list of Node
    names : mapping of party to list of str, optional
        Display name of each feature of a party (``""`` or missing: the
        party's ``<party>:feature#k`` label).

    Returns
    -------
    list of dict
        ``{"party", "feature" (index), "name", "splits", "gain"}``, one per
        feature that splits at least one node; ties in gain keep party and
        feature order.
    """
    names = names or {}
    acc: dict[tuple[str, int], list] = {}
    for nodes in trees:
        for n in nodes:
            if n.is_leaf or n.party is None:
                continue
            a = acc.setdefault((n.party, int(n.feature)), [0, 0.0])
            a[0] += 1
            a[1] += float(n.gain)
    out = []
    for (party, k), (count, gain) in sorted(acc.items()):
        lst = names.get(party, ())
        name = lst[k] if 0 <= k < len(lst) and lst[k] else host_feature_label(party, k)
        out.append({"party": party, "feature": k, "name": name, "splits": count, "gain": gain})
    out.sort(key=lambda d: -d["gain"])
    return out
