"""fedcredit.report: report.html from a report.json, with embedded plots; save_scores contract."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from fedcredit.errors import DataError
from fedcredit.report import SCORES_FILE, render_html, save_scores, write_html


def _traffic(peer: str, kind: str, n: int) -> dict:
    return {"bytes_sent": n, "bytes_received": n // 2, "messages_sent": 1,
            "peers": {peer: {"sent_bytes": n, "received_bytes": n // 2, "sent_messages": 1, "received_messages": 1}},
            "rows": [{"peer": peer, "direction": "sent", "kind": kind, "messages": 1, "bytes": n},
                     {"peer": peer, "direction": "received", "kind": kind, "messages": 1, "bytes": n // 2}]}


def _report(role: str, party: str) -> dict:
    lift = [{"group": g, "count": 100, "events": 40 - 3 * g, "event_rate": (40 - 3 * g) / 100, "lift": 1.0,
             "cum_events_share": g / 10, "cum_lift": 1.0, "min_score": 0.1, "max_score": 0.9} for g in range(1, 11)]
    guest = role == "guest"
    iv = {f"{party}.a": 0.4, f"{party}.b": 0.01} | ({"chain.c": 0.12} if guest else {})
    steps = [
        {"step": "psi", "kind": "psi", "state": "succeeded", "seconds": 1.5, "result": {"intersection": 1000},
         "traffic": _traffic("chain" if guest else "bank", "psi/points", 5000)},
        {"step": "binning", "kind": "binning", "state": "succeeded", "seconds": 2.0, "result": {"iv": iv},
         "traffic": _traffic("chain" if guest else "bank", "binning/labels", 90000)},
        {"step": "select", "kind": "select", "state": "succeeded", "seconds": 0.0,
         "result": {"kept": [f"{party}.a"] + (["chain.c"] if guest else [])}, "traffic": None},
        {"step": "sbt", "kind": "secureboost", "state": "succeeded", "seconds": 9.0,
         "result": {"per_tree": [{"tree": 0, "seconds": 4.0, "train_loss": 0.5, "validation_loss": 0.52},
                                 {"tree": 1, "seconds": 5.0, "train_loss": 0.45, "validation_loss": 0.49}],
                    "timings": {"encrypt": 1.25},
                    **({"train": {"auc": 0.8, "ks": 0.45}, "validation": {"auc": 0.78, "ks": 0.43}} if guest else {})},
         "traffic": _traffic("chain" if guest else "bank", "sbt/gh", 700000)},
        {"step": "lr", "kind": "hetero_lr", "state": "succeeded", "seconds": 3.0,
         "result": {"history": [{"epoch": 0, "val_loss": 0.51}, {"epoch": 1, "val_loss": 0.5}]}, "traffic": None},
    ]
    if guest:
        steps.append({"step": "eval", "kind": "evaluate", "state": "succeeded", "seconds": 0.5,
                      "result": {"train": {"auc": 0.72, "ks": 0.4, "gini": 0.44, "n": 800, "event_rate": 0.2},
                                 "validation": {"auc": 0.71, "ks": 0.39, "gini": 0.42, "n": 200, "event_rate": 0.21,
                                                "lift": lift}}, "traffic": None})
    return {"job_id": "j-1", "name": "demo", "party": party, "state": "succeeded", "reason": "", "written": 1.0,
            "effective_config": {"party": party, "role": role, "initiator": "bank", "table": "credit",
                                 "columns": ["a", "b"], "policy": {"min_intersection": 100},
                                 "job": {"job": {"purpose": "credit-risk-model"},
                                         "parties": {"bank": {"role": "guest"}, "chain": {"role": "host"}},
                                         "steps": [{"name": "sbt", "kind": "secureboost", "params": {"n_trees": 2}}]}},
            "steps": steps, "decisions": {"chain": {"accepted": True, "reason": ""}}}


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", text)]


@pytest.mark.parametrize("role, party, min_images", [("guest", "bank", 6), ("host", "chain", 4)])
def test_html_has_sections_and_embedded_pngs(tmp_path, role, party, min_images):
    text = render_html(_report(role, party), job_dir=tmp_path)
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    imgs = _images(text)
    assert len(imgs) >= min_images
    assert all(i.startswith(b"\x89PNG\r\n\x1a\n") for i in imgs)
    for heading in ("Features", "Training", "Steps and timings", "What crossed the wire", "Effective configuration"):
        assert f"<h2>{heading}</h2>" in text
    assert "sbt/gh" in text and "700.0 kB" in text  # bytes per peer and message kind
    assert "Information value per feature" in text and "log-loss after each tree" in text
    if role == "guest":
        assert "Score distribution by decile" in text or "score distribution" in text
        assert "0.7800" in text  # validation AUC of the SecureBoost step
    else:
        assert "holds no labels" in text
        assert "bank.a" not in text  # a host's report shows only its own features' IV


def test_scores_file_gives_roc_ks_and_distribution(tmp_path):
    r = np.random.default_rng(0)
    y = r.integers(0, 2, 500)
    s = np.clip(0.3 * y + r.normal(0.35, 0.2, 500), 0, 1)
    save_scores(tmp_path / "sbt" / SCORES_FILE, y, s, validation=np.arange(400, 500))
    rep = _report("guest", "bank")
    text = render_html(rep, job_dir=tmp_path)
    for caption in ("sbt: ROC", "sbt: KS curve (validation rows)", "sbt: score distribution by class"):
        assert caption in text
    path = write_html(rep, tmp_path / "report.html")
    assert path.read_text(encoding="utf-8") == text


def test_escapes_untrusted_text(tmp_path):
    rep = _report("host", "chain")
    rep["reason"] = "<script>alert(1)</script>"
    text = render_html(rep, job_dir=tmp_path)
    assert "<script>" not in text and "&lt;script&gt;" in text


@pytest.mark.parametrize("y, score, msg", [
    (np.zeros((2, 2)), np.zeros(4), "1-d of equal length"),
    (np.zeros(3), np.zeros(4), "1-d of equal length"),
])
def test_save_scores_rejects_bad_shapes(tmp_path, y, score, msg):
    with pytest.raises(DataError, match=msg):
        save_scores(tmp_path / SCORES_FILE, y, score)


def test_failed_job_without_results_still_renders(tmp_path):
    rep = {"job_id": "j", "name": "x", "party": "bank", "state": "failed", "reason": "step 'psi' failed on bank: boom",
           "steps": [{"step": "psi", "kind": "psi", "state": "failed", "seconds": None, "result": {"error": "boom"},
                      "traffic": None}], "effective_config": {"role": "guest"}}
    text = render_html(rep, job_dir=tmp_path)
    assert "failed" in text and "boom" in text
