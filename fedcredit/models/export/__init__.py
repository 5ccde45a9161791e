"""Merged (exported) models in the formats decision engines take: PMML 4.4, ONNX and JSON.

Input is a merged plaintext model (``fedcredit.serving.export``: every party
approved its release): SecureBoost trees with every split's feature,
threshold and missing-value direction, or LR with every party's preprocessing
and coefficients. :func:`to_pmml` and :func:`to_onnx` reproduce its score
exactly as the federation computes it, including the fixed-point grid the
LR design is quantized to, missing values, and the scorecard's reason codes.
See ``docs/export.md``.
"""

from .pmml import to_pmml
from .onnx import to_onnx

FORMATS = ("json", "pmml", "onnx")

__all__ = ["to_pmml", "to_onnx", "FORMATS"]
