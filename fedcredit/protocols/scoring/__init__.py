"""Federated scoring of new applicants (see ``docs/scoring.md``).

:mod:`.spec` (messages, digests, fixed point, path queries), :mod:`.host` (a
host's masked LR contribution; its answers to SecureBoost path queries, with
bounded, expiring per-request state), :mod:`.guest` (the level-by-level tree
walk; combining into scores), :mod:`.parts` (loading
model parts from a training step's workdir). The service that runs them on a
party, with authorization, rate limits and audit, is :mod:`fedcredit.serving`.
"""

from .guest import Forest, TreeWalk, lr_scores
from .host import SessionTable, SplitTable, TreeSession, lr_contribution, lr_partial
from .parts import LR_FILE, ModelPart, load_lr_part, load_part, lr_part_dict, save_lr_part
from .spec import Kind, TreeQueries, id_digests, new_request_id

__all__ = [
    "Kind", "id_digests", "new_request_id", "TreeQueries", "SplitTable", "TreeSession", "SessionTable",
    "Forest", "TreeWalk", "lr_partial", "lr_contribution", "lr_scores", "LR_FILE", "ModelPart", "load_part",
    "load_lr_part", "lr_part_dict", "save_lr_part",
]
