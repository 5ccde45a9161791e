"""One-hot design for logistic regression (hetero_lr ``features = "onehot"``).

A categorical column becomes one 0/1 column per category seen in the
training rows, named ``column=category``; a numeric column is standardized
and clipped exactly as with ``features = "standardized"``. Rule for missing
and unseen values: a missing category, and a category the training rows
never had, is **all zeros** (no level is switched on, so it scores as the
intercept plus the other features).

No reference level is dropped. With every level kept the indicator columns
sum to one, collinear with the intercept; the L2 penalty (``alpha``) makes
the solution unique anyway. Dropping a level would make "missing or unseen"
(all zeros) indistinguishable from the dropped level, which then silently
takes every unseen category's score; keeping all levels keeps them apart.

Categorical values arrive as codes: positions in the column's category list
(:class:`fedcredit.data.Table`), the list the encoding records. Scoring
recodes a newer file to that list first
(:func:`fedcredit.data.recode_categories`), so a code is a category name.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .logistic import Standardizer

__all__ = ["OneHotDesign", "design_names"]


def design_names(features, categories: dict) -> list[str]:
    """Design column names: ``f`` for a numeric feature, ``f=category`` per level of a categorical one."""
    out: list[str] = []
    for f in features:
        out.extend([f"{f}={c}" for c in categories[f]] if f in categories else [f])
    return out


class OneHotDesign:
    """One party's one-hot + standardized design (see the module docstring).

    Parameters
    ----------
    features : list of str
        Input columns, in the order ``X``'s columns come.
    categories : dict of str to list of str
        Categorical features -> the category names of their codes (the table's list).
    clip : float or None, default=3.0
        Clip bound of the standardized numeric features.

    Attributes
    ----------
    levels_ : dict of str to list of int
        Per categorical feature, the codes that have a column (those present in the training rows).
    standardizer_ : Standardizer
        Fitted on the numeric features (in ``features`` order).
    """

    def __init__(self, features, categories: dict, *, clip: float | None = 3.0):
        self.features = list(features)
        self.categories = {f: [str(c) for c in v] for f, v in categories.items() if f in self.features}
        self.clip = clip

    @property
    def numeric(self) -> list[int]:
        return [j for j, f in enumerate(self.features) if f not in self.categories]

    def fit(self, X) -> OneHotDesign:
        X = np.asarray(X, dtype=np.float64)
        self.levels_ = {}
        for j, f in enumerate(self.features):
            if f in self.categories:
                x = X[:, j]
                self.levels_[f] = sorted({int(c) for c in x[~np.isnan(x)]})
        self.standardizer_ = Standardizer(clip=self.clip).fit(X[:, self.numeric])
        return self

    def names(self) -> list[str]:
        """Design column names (``f=category`` per level of a categorical feature)."""
        cats = {f: [self.categories[f][c] for c in lv] for f, lv in self.levels_.items()}
        return design_names(self.features, cats)

    def transform(self, X, *, missing_numeric: str = "error") -> np.ndarray:
        """The design, shape ``(n, len(names()))``.

        Missing and unseen categories (NaN, or a code without a column) are all zeros. A missing numeric value
        is refused (``"error"``, as the standardized features of training) or put at the mean (``"mean"``, as
        scoring does for an absent value).
        """
        X = np.asarray(X, dtype=np.float64)
        num = self.numeric
        with np.errstate(invalid="ignore"):
            Z = self.standardizer_.transform(X[:, num])
        if missing_numeric == "mean":
            Z = np.nan_to_num(Z, nan=0.0)
        elif np.isnan(Z).any():
            raise DataError("cannot standardize features with missing values; use WOE features or impute first")
        blocks, k = [], 0
        for j, f in enumerate(self.features):
            if f in self.levels_:
                x = X[:, j]
                blocks.append((x[:, None] == np.asarray(self.levels_[f], dtype=np.float64)[None, :])
                              .astype(np.float64))  # NaN equals nothing: missing -> all zeros
            else:
                blocks.append(Z[:, k:k + 1])
                k += 1
        return np.hstack(blocks) if blocks else np.zeros((X.shape[0], 0))

    def to_dict(self) -> dict:
        """JSON form kept in the model part: category lists (this party's own), levels and the standardizer."""
        return {"categories": self.categories, "levels": {f: list(v) for f, v in self.levels_.items()},
                "standardizer": self.standardizer_.to_dict()}

    @classmethod
    def from_dict(cls, features, d: dict) -> OneHotDesign:
        try:
            st = Standardizer.from_dict(d["standardizer"])
            enc = cls(features, d["categories"], clip=st.clip)
            enc.levels_ = {str(f): [int(c) for c in v] for f, v in d["levels"].items()}
            ok = set(enc.levels_) == set(enc.categories) and all(
                0 <= c < len(enc.categories[f]) for f, v in enc.levels_.items() for c in v)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError("malformed one-hot encoding in an LR model part") from e
        if not ok or len(st.mean_) != len(enc.numeric):
            raise DataError("malformed one-hot encoding in an LR model part")
        enc.standardizer_ = st
        return enc
