"""Serving trained models: federated scoring with authorization, rate limits, audit, revocation and export.

See ``docs/scoring.md``. :class:`ScoringService` is what a party process runs;
the wire side is :mod:`fedcredit.transport.scoring`.
"""

from .authz import RateLimiter, RefusalBudget, check_authorization
from .export import merge_lr, merge_secureboost, predict_merged
from .heads import PeerHeads
from .registry import LoadedModel, ModelRegistry
from .replay import ReplayCache
from .service import ScoringService

__all__ = ["ScoringService", "ModelRegistry", "LoadedModel", "RateLimiter", "RefusalBudget", "ReplayCache",
           "check_authorization", "PeerHeads", "merge_secureboost", "merge_lr", "predict_merged"]
