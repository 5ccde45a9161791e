"""Evaluation (step kind ``evaluate``): AUC, KS, Gini, lift, PSI train vs validation; ROC/KS PNGs.

Each host computes its partial scores ``X_h w_h`` on all aligned rows and
sends them to the guest, which adds its own part and evaluates on the
hetero_lr training and validation rows. **What the guest learns: the model's
final score of every aligned row** (as federated scoring would give it); with
one host that equals the host's partial score, so run ``evaluate`` only when
that is acceptable (the binning and training steps never reveal it).
"""

from __future__ import annotations

import enum
import io

import numpy as np

from ...errors import DataError, ProtocolError
from ...models import metrics
from ...models.logistic import validation_split
from .._spec import Message, Spec
from ..context import StepContext
from ..hetero_lr import partial_score
from .params import EvaluateParams

__all__ = ["run", "evaluate_scores"]


class Stage(str, enum.Enum):
    PARTIAL = "partial"


SPEC = Spec("evaluate", [Message(Stage.PARTIAL, "host", "guest", "job", {"score": ("ndarray", "float64")})])


def _png(plot, *args) -> bytes:
    buf = io.BytesIO()
    plot(*args, buf)
    return buf.getvalue()


def evaluate_scores(y, score, train, valid, *, artifacts=None, n_bins: int = 10) -> dict:
    """Metrics on train and validation rows, PSI of validation vs train scores, and plots.

    With ``artifacts`` (:class:`fedcredit.artifacts.Artifacts`, a step's ``ctx.artifacts``) the ROC and
    KS plots are kept there as ``roc.png`` / ``ks.png`` and ``out["plots"]`` lists their references.
    """
    y = np.asarray(y)
    out = {"train": metrics.evaluate_scores(y[train], score[train], n_bins=n_bins)}
    if len(valid):
        out["validation"] = metrics.evaluate_scores(y[valid], score[valid], n_bins=n_bins)
        out["psi_train_validation"] = metrics.psi(score[train], score[valid], n_bins=n_bins)
    if artifacts is not None:
        curves = {"train": (y[train], score[train])}
        if len(valid):
            curves["validation"] = (y[valid], score[valid])
        rows = valid if len(valid) else train
        out["plots"] = [artifacts.save_bytes("roc.png", _png(metrics.plot_roc, curves)),
                        artifacts.save_bytes("ks.png", _png(metrics.plot_ks, y[rows], score[rows]))]
    return out


def run(ctx: StepContext) -> dict:
    params = EvaluateParams.coerce(ctx.params, f"step {ctx.step!r} (evaluate)")
    part = ctx.state.get("hetero_lr")
    s = SPEC.session(ctx.roles, ctx.party)
    if ctx.role == "host":
        if part is None:
            raise DataError("evaluate needs a hetero_lr step first")
        s.send(ctx.channel, ctx.guest, Stage.PARTIAL, {"score": partial_score(ctx.data, part)})
        return {}
    if ctx.role != "guest":
        return {}
    if part is None:
        raise DataError("evaluate needs a hetero_lr step first")
    z = partial_score(ctx.data, part)
    for h in ctx.hosts:
        msg = s.recv(ctx.channel, h, Stage.PARTIAL)
        if msg["score"].shape != z.shape:
            raise ProtocolError(f"evaluate: {h!r} sent {msg['score'].shape[0]} scores for {z.shape[0]} rows")
        z = z + msg["score"]
    prob = 1.0 / (1.0 + np.exp(-z))
    split = part["split"]
    train, valid = validation_split(len(ctx.data), split["validation_fraction"], split["random_state"])
    res = evaluate_scores(ctx.data.y, prob, train, valid, artifacts=ctx.artifacts, n_bins=params.n_bins)
    rows = np.concatenate([train, valid]).astype(np.int64)  # for the report's ROC/KS/score-distribution plots
    ctx.artifacts.save_scores(np.asarray(ctx.data.y)[rows], prob[rows],
                              validation=np.arange(len(rows)) >= len(train))
    ctx.state["evaluate"] = {k: v for k, v in res.items() if k != "plots"}
    return res
