"""fedcredit._validation: declarative constraints and the one message format."""

from __future__ import annotations

import numpy as np
import pytest

from fedcredit._validation import Interval, Options, StrOptions, check_param, describe, validate_params
from fedcredit.errors import ConfigError

CONSTRAINTS = {
    "max_depth": [Interval(int, 1, 16, closed="both")],
    "learning_rate": [Interval(float, 0, 1, closed="right")],
    "key_bits": [Interval(int, 2048, None, closed="left")],
    "objective": [StrOptions({"binary"})],
    "n_bins": [Options(int, {16, 32})],
    "random_state": [None, Interval(int, 0, None)],
    "verbose": ["boolean"],
    "columns": [list],
}


def test_message_format_matches_sklearn_style():
    with pytest.raises(ConfigError) as info:
        validate_params({"max_depth": 0}, CONSTRAINTS, "VerticalSecureBoost")
    assert str(info.value) == (
        "The 'max_depth' parameter of VerticalSecureBoost must be an int in [1, 16]. Got 0 instead."
    )
    assert info.value.problems == [str(info.value)]


def test_unbounded_interval_text():
    msg = check_param("key_bits", 1024, CONSTRAINTS["key_bits"], "VerticalSecureBoost")
    assert msg == "The 'key_bits' parameter of VerticalSecureBoost must be an int in [2048, inf). Got 1024 instead."


@pytest.mark.parametrize(
    "name, value",
    [
        ("max_depth", True),  # bool is not an int
        ("max_depth", np.bool_(True)),
        ("max_depth", 2.0),
        ("max_depth", 17),
        ("learning_rate", 0),  # open on the left
        ("learning_rate", float("nan")),
        ("learning_rate", False),
        ("learning_rate", "0.1"),
        ("objective", "multiclass"),
        ("n_bins", 8),
        ("n_bins", True),
        ("random_state", -1),
        ("verbose", 1),
        ("columns", "a,b"),
    ],
)
def test_invalid_values_are_refused(name, value):
    with pytest.raises(ConfigError, match=rf"The '{name}' parameter of Est must be .* Got .* instead\."):
        validate_params({name: value}, CONSTRAINTS, "Est")


@pytest.mark.parametrize(
    "name, value",
    [
        ("max_depth", 1),
        ("max_depth", 16),
        ("max_depth", np.int64(3)),
        ("learning_rate", 1),  # int is fine for a float
        ("learning_rate", 0.3),
        ("key_bits", 3072),
        ("objective", "binary"),
        ("n_bins", 32),
        ("random_state", None),
        ("random_state", 0),
        ("verbose", False),
        ("columns", ["a"]),
    ],
)
def test_valid_values_pass(name, value):
    validate_params({name: value}, CONSTRAINTS, "Est")


def test_all_problems_reported_at_once_and_unknown_keys():
    with pytest.raises(ConfigError) as info:
        validate_params({"max_depth": 0, "learning_rate": 2.0, "max_dpeth": 3}, CONSTRAINTS, "Est")
    problems = info.value.problems
    assert len(problems) == 3
    assert any("'max_dpeth'" in p and "no parameter" in p for p in problems)
    validate_params({"max_dpeth": 3}, CONSTRAINTS, "Est", allow_unknown=True)


def test_describe_disjunction():
    assert describe([None, Interval(int, 0, None)]) == "None or an int in [0, inf)"
    assert describe([Interval(float, 0, 1, closed="neither")]) == "a float in (0, 1)"


def test_bad_constraint_definitions_fail_loudly():
    with pytest.raises(ValueError):
        Interval(int, 5, 1)
    with pytest.raises(ValueError):
        Interval(int, 0, 1, closed="sometimes")
    with pytest.raises(TypeError):
        Interval(str, 0, 1)
