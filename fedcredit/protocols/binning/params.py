"""Parameters of the ``binning`` step (validated once, passed down frozen)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..._validation import Interval, Params, StrOptions
from ...models.woe import MAX_BINS

__all__ = ["BinningParams"]


@dataclass(frozen=True)
class BinningParams(Params):
    """``binning`` step parameters.

    Attributes
    ----------
    method : {"quantile", "monotonic"}
        Quantile bins, or quantile bins merged to a monotonic event rate.
    max_bins : int, default=10
        Value bins per feature before merging (≤ 32); missing values get their own bin.
    weight_column : str or None
        A column of the guest's table holding row weights (not binned as a feature).
    class_weight : None, "balanced" or dict
        Weight per class, multiplied into the row weights. With weights, events
        and non-events per bin are weighted sums: the guest encrypts ``w * y``
        and ``w`` (``w`` on a grid of ``2**-WEIGHT_BITS``) instead of ``y``.
    min_bin_count : int, default=50
        No bin with fewer rows is ever counted or revealed (it is merged first).
    smoothing : float, default=0.5
        Added to events and non-events of each bin in the WOE formula.
    categorical : list of str
        Feature names (``"party.col"`` or this party's raw column names) binned by category.
    key_bits : int, default=2048
        Key size of the additive scheme ``he`` for the encrypted labels.
    label_epsilon : float or None, default=None
        Label differential privacy for the hosts' WOE: the guest encrypts
        randomized-response labels (each flipped with probability
        ``q = 1 / (1 + e**label_epsilon)``, from ``secrets``) and debiases each
        host bin's event count, ``(events - q * total) / (1 - 2 q)``, before the
        WOE it returns; what a host learns is then ``label_epsilon``-label-DP
        (see ``docs/privacy.md``). None: off, the exact counts. The guest's own
        features use its true labels (they never leave it).
    he : {"paillier", "ou"}, default="paillier"
        Additive scheme of the encrypted labels: Paillier, or Okamoto-Uchiyama
        (half the ciphertext bytes; the guest decrypts every count under a
        declared bound, see ``docs/crypto.md``, "OU", and ``binning/guest.py``).
    """

    _owner = "step 'binning'"
    _parameter_constraints = {
        "method": [StrOptions({"quantile", "monotonic"})],
        "max_bins": [Interval(int, 2, MAX_BINS)],
        "weight_column": [None, str],
        "class_weight": [None, StrOptions({"balanced"}), dict],
        "min_bin_count": [Interval(int, 1, None)],
        "smoothing": [Interval(float, 0, None)],
        "categorical": [list],
        "key_bits": [Interval(int, 2048, None)],
        "label_epsilon": [None, Interval(float, 0, None, closed="neither")],
        "he": [StrOptions({"paillier", "ou"})],
    }

    method: str = "quantile"
    max_bins: int = 10
    weight_column: str | None = None
    class_weight: object = None
    min_bin_count: int = 50
    smoothing: float = 0.5
    categorical: list = field(default_factory=list)
    key_bits: int = 2048
    label_epsilon: float | None = None
    he: str = "paillier"

    @property
    def weighted(self) -> bool:
        """Events and rows per bin are weighted sums (``weight_column`` or ``class_weight`` set)."""
        return self.weight_column is not None or self.class_weight is not None
