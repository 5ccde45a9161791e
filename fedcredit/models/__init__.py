"""Party-agnostic model math: logistic, tree, WOE binning, scorecard, metrics."""
