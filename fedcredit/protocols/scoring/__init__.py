"""Federated scoring of new applicants (see ``docs/scoring.md``).

:mod:`.spec` (messages, digests, fixed point), :mod:`.host` (a host's masked
contribution), :mod:`.guest` (combining into scores), :mod:`.parts` (loading
model parts from a training step's workdir). The service that runs them on a
party, with authorization, rate limits and audit, is :mod:`fedcredit.serving`.
"""

from .guest import lr_scores, tree_scores, unpack_decisions
from .host import lr_contribution, lr_partial, tree_contribution
from .parts import LR_FILE, ModelPart, load_lr_part, load_part, save_lr_part
from .spec import Kind, id_digests, new_request_id

__all__ = [
    "Kind", "id_digests", "new_request_id", "tree_contribution", "lr_partial", "lr_contribution",
    "tree_scores", "lr_scores", "unpack_decisions", "LR_FILE", "ModelPart", "load_part", "load_lr_part",
    "save_lr_part",
]
