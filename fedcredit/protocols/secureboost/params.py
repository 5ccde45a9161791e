"""Parameters of the ``secureboost`` step (checked when the job is submitted, passed down frozen)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..._validation import Interval, Params, StrOptions
from ...errors import ConfigError
from ...models.tree.gbdt import TREE_PARAMETER_CONSTRAINTS
from .he import DEFAULT_HE, SCHEMES
from .spec import MIN_NODE_ROWS

__all__ = ["SecureBoostParams", "STEP_ONLY"]

#: step parameters that are no hyperparameter of :class:`VerticalSecureBoost`
STEP_ONLY = ("weight_column", "monotone")


@dataclass(frozen=True)
class SecureBoostParams(Params):
    """``secureboost`` step parameters: every hyperparameter of :class:`VerticalSecureBoost` (documented
    there, with the same defaults and constraints) and the two step-only ones below.

    Attributes
    ----------
    weight_column : str or None, default=None
        A column of the guest's table holding row weights (not a feature).
    monotone : dict or None, default=None
        ``{ <party> = { <column> = 1 or -1 } }``: each party adds its own entry
        to the ``monotone`` of its table config.
    """

    _parameter_constraints = {
        **TREE_PARAMETER_CONSTRAINTS,
        "min_node_rows": [Interval(int, MIN_NODE_ROWS, None)],
        "guest_only_first_tree": ["boolean"],
        "guest_only_trees": [Interval(int, 0, None)],
        "key_bits": [Interval(int, 2048, None)],
        "gh_part_rows": [None, Interval(int, 1, None)],
        "he": [StrOptions(set(SCHEMES))],
        "weight_column": [None, str],
        "monotone": [None, dict],
    }

    n_trees: int = 5
    max_depth: int = 3
    learning_rate: float = 0.3
    max_bins: int = 32
    reg_lambda: float = 1.0
    min_child_weight: float = 1e-3
    min_split_gain: float = 0.0
    subsample: float = 1.0
    colsample: float = 1.0
    min_node_rows: int = MIN_NODE_ROWS
    early_stopping_rounds: int | None = None
    class_weight: object = None
    he: str = DEFAULT_HE
    validation_fraction: float = 0.2
    guest_only_first_tree: bool = False
    key_bits: int = 2048
    gh_part_rows: int | None = None
    random_state: int = 0
    guest_only_trees: int = 0
    label_epsilon: float | None = None
    weight_column: str | None = None
    monotone: dict | None = None

    def _check(self, owner: str) -> None:
        m = self.monotone
        if m is not None and not all(isinstance(v, dict) for v in m.values()):
            raise ConfigError(f"{owner}: monotone must be {{ <party> = {{ <column> = 1 }} }}")

    def estimator_params(self) -> dict:
        """The :class:`VerticalSecureBoost` hyperparameters (without the step-only ones)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in STEP_ONLY}


#: the constraints of :class:`VerticalSecureBoost` (the same, minus the step-only parameters)
ESTIMATOR_CONSTRAINTS = {k: v for k, v in SecureBoostParams._parameter_constraints.items() if k not in STEP_ONLY}
