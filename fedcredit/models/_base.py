"""One estimator base: parameters declared once, read, set, checked; fitted state checked.

Modelled on scikit-learn's ``BaseEstimator``. An estimator stores its
keyword-only ``__init__`` arguments unchanged and declares their constraints
once, in the one spelling every estimator and every step's ``Params`` uses::

    class GBDTReference(_BaseEstimator):
        _parameter_constraints = {"n_trees": [Interval(int, 1, 10_000)], ...}
        _fitted_attr = "trees_"

``get_params``/``set_params`` work on exactly those names, ``_validate_params``
checks them with :func:`fedcredit._validation.validate_params` (one message
format) and ``_check_fitted`` raises :class:`~fedcredit.errors.NotFittedError`
before a fitted attribute is read.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .._validation import validate_params
from ..errors import ConfigError, NotFittedError

__all__ = ["_BaseEstimator"]


class _BaseEstimator:
    """Mixin of every estimator: ``get_params``, ``set_params``, ``_validate_params``, ``_check_fitted``."""

    #: parameter name -> constraints (see :mod:`fedcredit._validation`); the parameters are exactly its keys
    _parameter_constraints: ClassVar[dict[str, list]] = {}
    #: the attribute ``fit`` sets last (its presence means fitted)
    _fitted_attr: ClassVar[str] = "coef_"

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as passed to ``__init__`` (or ``set_params``)."""
        return {k: getattr(self, k) for k in self._parameter_constraints}

    def set_params(self, **params: Any):
        """Set hyperparameters by name; an unknown name is a :class:`ConfigError` (nothing is set)."""
        unknown = [k for k in params if k not in self._parameter_constraints]
        if unknown:
            raise ConfigError(f"{type(self).__name__} has no parameter {unknown[0]!r} "
                              f"(known: {', '.join(sorted(self._parameter_constraints))})")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def _validate_params(self) -> None:
        """Check every hyperparameter against its constraints (all problems in one ConfigError)."""
        validate_params(self.get_params(), self._parameter_constraints, type(self).__name__)

    def _check_fitted(self) -> None:
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call 'fit' first.")
