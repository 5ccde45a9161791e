"""Histogram gradient-boosted trees: the plaintext reference of SecureBoost.

Files follow the algorithm (scikit-learn's ``_hist_gradient_boosting`` shape):
:mod:`.binning` → :mod:`.histogram` → :mod:`.split` → :mod:`.grower` →
:mod:`.predictor`, and :mod:`.gbdt` puts them together as
:class:`GBDTReference`.
"""

from .binning import BinMapper
from .gbdt import GBDTReference
from .grower import FeatureSource, LocalSource, Node, TreeGrower
from .importance import feature_importance
from .predictor import predict_raw
from .split import SplitParams

__all__ = ["BinMapper", "GBDTReference", "FeatureSource", "LocalSource", "Node", "TreeGrower", "predict_raw", "SplitParams",
           "feature_importance"]
