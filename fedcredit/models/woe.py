"""Binning for weight of evidence (WOE) and information value (IV).

The work is split so that a party without labels can do its part:

1. :func:`fit_bins` (label-free) cuts one feature into at most ``max_bins``
   value bins (quantiles of the non-missing values, or one bin per category)
   plus a missing-value bin, and enforces ``min_bin_count`` *before any
   label-derived count exists*: a value bin with fewer rows is merged with
   its smaller neighbour (numeric) or pooled with the other small categories
   (categorical); a non-empty missing bin below the minimum is merged into the
   largest value bin. Bins are merged, never withheld: withholding one bin's
   event count would not hide it, since the label holder knows the total
   number of events and gets it by subtraction.
2. :func:`bin_event_counts` (needs labels) counts events per bin; in the
   federated protocol the host computes it on encrypted labels.
3. :func:`monotonic_groups` (optional, from counts only) merges adjacent value
   bins so the event rate is monotonic (pool-adjacent-violators, the
   direction with the larger IV wins); :meth:`Bins.merge` applies it.
4. :func:`woe_iv` turns counts into WOE per bin and IV.

WOE of bin ``i`` is ``ln((e_i + a) / (E + a k)) - ln((n_i + a) / (N + a k))``
with events ``e_i``, non-events ``n_i``, totals ``E``, ``N``, ``k`` bins with
rows and smoothing ``a`` (default 0.5, so a pure bin has a finite WOE);
``IV = sum((e_i/E - n_i/N) * WOE_i)`` over bins with rows (unsmoothed shares).
An empty bin (e.g. no missing values at training time) gets WOE 0: a value
that falls there at scoring time contributes nothing.

Edge cases (documented handling): a constant feature has one value bin and
IV 0; an all-missing feature has only the missing bin and IV 0 (selection
drops both); a category unseen at training time raises :class:`DataError`
unless ``unseen="missing"`` is asked, which maps it to the missing bin.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import DataError

__all__ = [
    "MAX_BINS",
    "Bins",
    "fit_bins",
    "bin_event_counts",
    "monotonic_groups",
    "woe_iv",
    "fit_woe",
]

MAX_BINS = 32


@dataclass(frozen=True)
class Bins:
    """The bins of one feature. Bin ``n_value_bins`` is the missing bin.

    Attributes
    ----------
    name : str
        Feature name (namespaced, ``"party.col"``).
    categorical : bool
    edges : ndarray of float64
        Numeric features: inclusive upper edges of the value bins but the last
        (value bin ``i`` holds ``edges[i-1] < x <= edges[i]``). Private to the
        feature's owner.
    categories : tuple of tuple of float
        Categorical features: the categories in each value bin.
    missing_merged_into : int or None
        When the missing bin was below the minimum count, the value bin that
        missing values are counted in.
    counts : ndarray of int64, shape (n_value_bins + 1,)
        Training rows per bin (missing bin last; 0 when merged away).
    woe, iv : ndarray of float64, shape (n_value_bins + 1,), optional
        Set by :meth:`with_woe`.
    """

    name: str
    categorical: bool
    edges: np.ndarray
    categories: tuple
    missing_merged_into: int | None
    counts: np.ndarray
    woe: np.ndarray | None = None
    iv: np.ndarray | None = None
    _cat_index: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_value_bins(self) -> int:
        return len(self.categories) if self.categorical else len(self.edges) + 1

    @property
    def n_bins(self) -> int:
        """Value bins plus the missing bin."""
        return self.n_value_bins + 1

    @property
    def missing_bin(self) -> int:
        return self.n_value_bins

    @property
    def total_iv(self) -> float:
        if self.iv is None:
            raise DataError(f"feature {self.name!r}: WOE/IV not computed yet")
        return float(self.iv.sum())

    def labels(self) -> list[str]:
        """Readable bin descriptions (the owner's private thresholds/categories)."""
        out = []
        if self.categorical:
            for cats in self.categories:
                out.append("{" + ", ".join(_fmt(c) for c in cats) + "}")
        else:
            lo = "-inf"
            for e in self.edges:
                out.append(f"({lo}, {_fmt(e)}]")
                lo = _fmt(e)
            out.append(f"({lo}, inf)")
        out.append("missing" if self.missing_merged_into is None else f"missing -> bin {self.missing_merged_into}")
        return out

    def assign(self, x, *, unseen: str = "error") -> np.ndarray:
        """Bin index of each value (missing values → the missing bin, or the bin it was merged into).

        Parameters
        ----------
        x : array-like of shape (n,)
            Raw values, NaN for missing.
        unseen : {"error", "missing"}, default="error"
            Categorical features: what to do with a category not seen in training.

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        x = np.asarray(x, dtype=np.float64)
        miss = np.isnan(x)
        out = np.empty(x.shape[0], dtype=np.int64)
        if self.categorical:
            idx = self._cat_index or {c: b for b, cats in enumerate(self.categories) for c in cats}
            vals = x[~miss]
            uniq, inv = np.unique(vals, return_inverse=True)
            lut = np.array([idx.get(float(u), -1) for u in uniq], dtype=np.int64)
            got = lut[inv] if vals.size else np.empty(0, dtype=np.int64)
            if np.any(got < 0):
                bad = sorted({float(u) for u in uniq[lut < 0]})[:5]
                if unseen != "missing":
                    raise DataError(
                        f"feature {self.name!r}: categories {bad} were not seen when the bins were fitted "
                        "(pass unseen='missing' to score them as missing)"
                    )
                got = np.where(got < 0, self._missing_target(), got)
            out[~miss] = got
        else:
            out[~miss] = np.searchsorted(self.edges, x[~miss], side="left")
        out[miss] = self._missing_target()
        return out

    def _missing_target(self) -> int:
        return self.missing_bin if self.missing_merged_into is None else self.missing_merged_into

    def merge(self, groups: list[list[int]]) -> "Bins":
        """Merge value bins: ``groups`` partitions ``range(n_value_bins)``; numeric groups must be runs.

        Returns a new :class:`Bins` (without WOE) with one value bin per group.
        """
        flat = [i for g in groups for i in g]
        if sorted(flat) != list(range(self.n_value_bins)) or any(len(g) == 0 for g in groups):
            raise DataError(f"feature {self.name!r}: merge groups must partition the {self.n_value_bins} value bins")
        new_of = np.empty(self.n_value_bins, dtype=np.int64)
        for j, g in enumerate(groups):
            new_of[g] = j
        counts = np.zeros(len(groups) + 1, dtype=np.int64)
        np.add.at(counts, new_of, self.counts[:-1])
        counts[-1] = self.counts[-1]
        mm = None if self.missing_merged_into is None else int(new_of[self.missing_merged_into])
        if self.categorical:
            cats = tuple(tuple(sorted(c for i in g for c in self.categories[i])) for g in groups)
            return _make(self.name, True, np.empty(0), cats, mm, counts)
        if any(list(g) != list(range(g[0], g[0] + len(g))) for g in groups) or [g[0] for g in groups] != sorted(
            g[0] for g in groups
        ):
            raise DataError(f"feature {self.name!r}: numeric merge groups must be ordered runs of adjacent bins")
        edges = np.array([self.edges[g[-1]] for g in groups[:-1]], dtype=np.float64)
        return _make(self.name, False, edges, (), mm, counts)

    def with_woe(self, woe, iv) -> "Bins":
        woe = np.asarray(woe, dtype=np.float64)
        iv = np.asarray(iv, dtype=np.float64)
        if woe.shape != (self.n_bins,) or iv.shape != (self.n_bins,):
            raise DataError(f"feature {self.name!r}: expected {self.n_bins} WOE/IV values, got {woe.shape}, {iv.shape}")
        return replace(self, woe=woe, iv=iv)

    def transform(self, x, *, unseen: str = "error") -> np.ndarray:
        """WOE value of each raw value (requires :meth:`with_woe`)."""
        if self.woe is None:
            raise DataError(f"feature {self.name!r}: WOE not computed yet")
        return self.woe[self.assign(x, unseen=unseen)]

    def to_dict(self) -> dict:
        """JSON-able form (the owner's private model part)."""
        return {
            "name": self.name,
            "categorical": self.categorical,
            "edges": [float(e) for e in self.edges],
            "categories": [[float(c) for c in cats] for cats in self.categories],
            "missing_merged_into": self.missing_merged_into,
            "counts": [int(c) for c in self.counts],
            "woe": None if self.woe is None else [float(v) for v in self.woe],
            "iv": None if self.iv is None else [float(v) for v in self.iv],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Bins":
        b = _make(d["name"], bool(d["categorical"]), np.asarray(d["edges"], dtype=np.float64),
                  tuple(tuple(c) for c in d["categories"]), d["missing_merged_into"],
                  np.asarray(d["counts"], dtype=np.int64))
        if d.get("woe") is not None:
            b = b.with_woe(d["woe"], d["iv"])
        return b


def _fmt(v: float) -> str:
    return f"{v:g}"


def _make(name, categorical, edges, categories, missing_merged_into, counts) -> Bins:
    idx = {float(c): b for b, cats in enumerate(categories) for c in cats} if categorical else {}
    return Bins(name, categorical, np.asarray(edges, dtype=np.float64), tuple(categories), missing_merged_into,
                np.asarray(counts, dtype=np.int64), _cat_index=idx)


def fit_bins(
    x,
    *,
    name: str = "x",
    max_bins: int = 10,
    categorical: bool = False,
    min_bin_count: int = 1,
) -> Bins:
    """Label-free bins of one feature (quantile cuts or categories), with the minimum count enforced.

    Parameters
    ----------
    x : array-like of shape (n,)
        Values; NaN is missing.
    name : str, default="x"
        Feature name.
    max_bins : int, default=10
        At most this many value bins (≤ 32); a numeric feature with at most
        ``max_bins`` distinct values gets one bin per value.
    categorical : bool, default=False
        One bin per category (categories beyond ``max_bins`` are pooled by
        frequency: the rarest share a bin).
    min_bin_count : int, default=1
        Every non-empty bin ends with at least this many rows (see module doc).

    Returns
    -------
    Bins
    """
    if not 1 <= int(max_bins) <= MAX_BINS:
        raise DataError(f"max_bins must be in [1, {MAX_BINS}]; got {max_bins}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise DataError(f"feature {name!r}: expected a 1-d column, got shape {x.shape}")
    miss = np.isnan(x)
    vals = x[~miss]
    n_miss = int(miss.sum())
    if categorical:
        if vals.size == 0:
            cats: list[tuple] = [()]
            counts_v = np.zeros(1, dtype=np.int64)
        else:
            uniq, cnt = np.unique(vals, return_counts=True)
            order = np.lexsort((uniq, -cnt))  # most frequent first
            groups = [[float(uniq[i])] for i in order]
            gc = [int(cnt[i]) for i in order]
            # pool categories beyond max_bins, and small categories, into one "rest" bin
            keep = [i for i in range(len(groups)) if gc[i] >= min_bin_count][: max_bins]
            rest = [i for i in range(len(groups)) if i not in keep]
            if rest and len(keep) == max_bins:
                keep = keep[:-1]
                rest = [i for i in range(len(groups)) if i not in keep]
            cats = [tuple(groups[i]) for i in keep]
            counts_l = [gc[i] for i in keep]
            if rest:
                pooled = tuple(sorted(c for i in rest for c in groups[i]))
                pc = sum(gc[i] for i in rest)
                if pc < min_bin_count and cats:
                    j = int(np.argmin(counts_l))
                    cats[j] = tuple(sorted(cats[j] + pooled))
                    counts_l[j] += pc
                else:
                    cats.append(pooled)
                    counts_l.append(pc)
            cats = [tuple(sorted(c)) for c in cats]
            counts_v = np.asarray(counts_l, dtype=np.int64)
        edges = np.empty(0)
    else:
        cats = []
        if vals.size == 0:
            edges = np.empty(0)
        else:
            uniq = np.unique(vals)
            if uniq.size <= max_bins:
                edges = uniq[:-1]
            else:
                qs = np.quantile(vals, np.linspace(0, 1, max_bins + 1)[1:-1], method="linear")
                edges = np.unique(qs)
                edges = edges[edges < uniq[-1]]
        counts_v = np.bincount(np.searchsorted(edges, vals, side="left"), minlength=edges.size + 1).astype(np.int64)
        # merge value bins below the minimum with their smaller neighbour
        edges = list(edges)
        counts_l = list(counts_v)
        while len(counts_l) > 1:
            small = [i for i, c in enumerate(counts_l) if c < min_bin_count]
            if not small:
                break
            i = min(small, key=lambda k: (counts_l[k], k))
            if i == 0:
                j = 1
            elif i == len(counts_l) - 1:
                j = i - 1
            else:
                j = i - 1 if counts_l[i - 1] <= counts_l[i + 1] else i + 1
            lo, hi = min(i, j), max(i, j)
            counts_l[lo] += counts_l[hi]
            del counts_l[hi]
            del edges[lo]  # the edge between lo and hi disappears
        edges = np.asarray(edges, dtype=np.float64)
        counts_v = np.asarray(counts_l, dtype=np.int64)
    counts = np.r_[counts_v, n_miss].astype(np.int64)
    merged_into = None
    if 0 < n_miss < min_bin_count and counts_v.sum() > 0:
        merged_into = int(np.argmax(counts_v))
        counts[merged_into] += n_miss
        counts[-1] = 0
    return _make(name, bool(categorical), edges, tuple(tuple(c) for c in cats), merged_into, counts)


def bin_event_counts(bin_index, y, n_bins: int) -> np.ndarray:
    """Events (label 1) per bin: the plaintext twin of the host's encrypted ``group_sum``."""
    return np.bincount(np.asarray(bin_index), weights=np.asarray(y, dtype=np.float64), minlength=n_bins).astype(np.int64)


def woe_iv(events, totals, *, smoothing: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """WOE and IV contribution per bin from event counts and row counts.

    Parameters
    ----------
    events, totals : array-like of int, shape (k,)
        Events and rows per bin (bins with 0 rows get WOE 0 and IV 0).
    smoothing : float, default=0.5
        Added to the events and non-events of every non-empty bin.

    Returns
    -------
    woe, iv : ndarray of float64, shape (k,)
    """
    e = np.asarray(events, dtype=np.float64)
    t = np.asarray(totals, dtype=np.float64)
    if e.shape != t.shape or np.any(e < 0) or np.any(e > t):
        raise DataError("woe_iv: events must satisfy 0 <= events <= totals per bin")
    ne = t - e
    E, N = e.sum(), ne.sum()
    if E == 0 or N == 0:
        raise DataError("woe_iv: the label has a single class; WOE is undefined")
    has = t > 0
    k = int(has.sum())
    a = float(smoothing)
    woe = np.zeros_like(e)
    woe[has] = np.log((e[has] + a) / (E + a * k)) - np.log((ne[has] + a) / (N + a * k))
    iv = np.zeros_like(e)
    iv[has] = (e[has] / E - ne[has] / N) * woe[has]
    return woe, iv


def _pav_blocks(events: np.ndarray, totals: np.ndarray, increasing: bool) -> list[list[int]]:
    """Pool-adjacent-violators: runs of bins with monotonic event rate."""
    blocks: list[list] = []  # [events, totals, [indices]]
    for i, (e, t) in enumerate(zip(events, totals)):
        blocks.append([float(e), float(t), [i]])
        while len(blocks) > 1:
            e1, t1, _ = blocks[-2]
            e2, t2, _ = blocks[-1]
            r1 = e1 / t1 if t1 else 0.0
            r2 = e2 / t2 if t2 else 0.0
            bad = (r2 < r1) if increasing else (r2 > r1)
            if t2 == 0 or t1 == 0 or bad:
                last = blocks.pop()
                blocks[-1][0] += last[0]
                blocks[-1][1] += last[1]
                blocks[-1][2] += last[2]
            else:
                break
    return [b[2] for b in blocks]


def monotonic_groups(events, totals, *, smoothing: float = 0.5) -> list[list[int]]:
    """Groups of adjacent value bins with a monotonic event rate (the direction with the larger IV).

    Parameters
    ----------
    events, totals : array-like of shape (n_value_bins + 1,)
        Per-bin counts *including* the missing bin last (it is kept apart and
        only used for the IV comparison).

    Returns
    -------
    list of list of int
        A partition of ``range(n_value_bins)`` into runs, for :meth:`Bins.merge`.
    """
    e = np.asarray(events, dtype=np.float64)
    t = np.asarray(totals, dtype=np.float64)
    ev, tv = e[:-1], t[:-1]
    best, best_iv = None, -1.0
    for inc in (True, False):
        groups = _pav_blocks(ev, tv, inc)
        ge = np.array([ev[g].sum() for g in groups] + [e[-1]])
        gt = np.array([tv[g].sum() for g in groups] + [t[-1]])
        try:
            iv = woe_iv(ge, gt, smoothing=smoothing)[1].sum()
        except DataError:
            iv = 0.0
        if iv > best_iv + 1e-12:
            best, best_iv = groups, iv
    return best


def fit_woe(
    x,
    y,
    *,
    name: str = "x",
    method: str = "quantile",
    max_bins: int = 10,
    categorical: bool = False,
    min_bin_count: int = 1,
    smoothing: float = 0.5,
    sample_weight=None,
) -> Bins:
    """Centralized WOE binning of one feature (the reference the federated protocol must equal).

    Parameters
    ----------
    x : array-like of shape (n,)
        Feature values.
    y : array-like of shape (n,)
        Binary labels.
    method : {"quantile", "monotonic"}, default="quantile"
        ``"monotonic"`` merges adjacent quantile bins until the event rate is
        monotonic (categorical features are never merged this way).
    sample_weight : array-like of shape (n,), optional
        Row weights: events and non-events per bin become weighted sums (bins
        and ``min_bin_count`` still count rows).
    Other parameters are as in :func:`fit_bins` and :func:`woe_iv`.

    Returns
    -------
    Bins
        With ``woe`` and ``iv`` set.
    """
    y = np.asarray(y)
    if not np.all(np.isin(np.unique(y), (0, 1))):
        raise DataError(f"the label must be binary 0/1; got values {np.unique(y)[:5].tolist()}")
    bins = fit_bins(x, name=name, max_bins=max_bins, categorical=categorical, min_bin_count=min_bin_count)

    def counts(b):
        a = b.assign(x)
        if sample_weight is None:
            return bin_event_counts(a, y, b.n_bins), b.counts
        sw = np.asarray(sample_weight, dtype=np.float64)
        return (np.bincount(a, weights=sw * y, minlength=b.n_bins), np.bincount(a, weights=sw, minlength=b.n_bins))

    ev, tot = counts(bins)
    if method == "monotonic" and not categorical and bins.n_value_bins > 1:
        bins = bins.merge(monotonic_groups(ev, tot, smoothing=smoothing))
        ev, tot = counts(bins)
    woe, iv = woe_iv(ev, tot, smoothing=smoothing)
    return bins.with_woe(woe, iv)
