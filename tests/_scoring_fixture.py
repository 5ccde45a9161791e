"""A three-party federation (bank guest; chain, gov hosts) with trained models in the parties' state dirs.

SecureBoost is trained federatedly in memory (small test key) on 1,500 rows of the
credit3 intersection; the LR model is a plaintext logistic regression on the
same rows, split into per-party parts in the format the hetero_lr step writes
(standardizer + coefficients per party). Parties run in this process, each with
its own mTLS gRPC server on a free loopback port.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedcredit.artifacts import FileArtifacts
from fedcredit.config import load_party_config
from fedcredit.data import load_table
from fedcredit.launcher import write_federation
from fedcredit.models.logistic import LogisticRegressionGD, Standardizer, quantize
from fedcredit.models.woe import fit_woe
from fedcredit.party import Party
from fedcredit.protocols.scoring.parts import save_lr_part
from fedcredit.protocols.secureboost import VerticalSecureBoost
from fedcredit.testing import small_keypair
from fedcredit.transport.memory import run_local

JOB = "train-20240101-000000-abcdef"
SBT = f"{JOB}/sbt"
LR = f"{JOB}/lr"
WOE = f"{JOB}/woe"
HOSTS = ("chain", "gov")
PARTIES = ("bank", "chain", "gov")
N_TRAIN = 1500


def scoring_policy(**kw) -> str:
    lines = ["", "[policy.scoring]"]
    for k, v in kw.items():
        lines.append(f"{k} = {v!r}".replace("'", '"') if not isinstance(v, list) else
                     f"{k} = [{', '.join(repr(x).replace(chr(39), chr(34)) for x in v)}]")
    return "\n".join(lines) + "\n"


def tables(data_dir) -> dict:
    d = {"bank": load_table(data_dir / "credit3" / "bank.csv", party="bank", label_column="default_next_month"),
         "chain": load_table(data_dir / "credit3" / "chain.csv", party="chain"),
         "gov": load_table(data_dir / "credit3" / "gov.csv", party="gov")}
    return d


def joined_ids(t: dict) -> list[str]:
    common = set(t["bank"].ids) & set(t["chain"].ids) & set(t["gov"].ids)
    return sorted(common)


def rows(table, ids) -> np.ndarray:
    """Rows of ``table`` for ``ids`` (NaN for ids it lacks)."""
    index = {k: i for i, k in enumerate(table.ids)}
    out = np.full((len(ids), table.X.shape[1]), np.nan)
    for r, k in enumerate(ids):
        i = index.get(k)
        if i is not None:
            out[r] = table.X[i]
    return out


def columns(t: dict, ids) -> dict:
    """Every party's feature columns for ``ids`` by namespaced name (the joined data, for central scoring)."""
    cols = {}
    for p in PARTIES:
        X = rows(t[p], ids)
        cols.update({f: X[:, j] for j, f in enumerate(t[p].feature_names)})
    return cols


def missing_at_gov(t: dict, n: int = 20) -> list[str]:
    """Customers of the bank and chain that gov does not have (they take gov's missing-value branches)."""
    return sorted((set(t["bank"].ids) & set(t["chain"].ids)) - set(t["gov"].ids))[:n]


def train(root, t: dict) -> dict:
    """Both models: SecureBoost (federated, small test key) and LR (per-party parts)."""
    ids = joined_ids(t)[:N_TRAIN]
    X = {p: rows(t[p], ids) for p in PARTIES}
    y = pd.Series(t["bank"].y, index=t["bank"].ids).loc[ids].to_numpy()
    wd = {p: root / "state" / p / "jobs" / JOB for p in PARTIES}
    kp = small_keypair(1024)
    kw = {"n_trees": 4, "max_depth": 3, "learning_rate": 0.3, "key_bits": 2048}
    fns = {"bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, X["bank"], y, keypair=kp,
                                                            feature_names=list(t["bank"].feature_names),
                                                            artifacts=FileArtifacts(wd["bank"] / "sbt"))}
    for h in HOSTS:
        fns[h] = lambda ch, h=h: VerticalSecureBoost(**kw).fit(ch, X[h], guest="bank",
                                                                feature_names=list(t[h].feature_names),
                                                                artifacts=FileArtifacts(wd[h] / "sbt"))
    run_local(fns, timeout=300)
    return train_lr(root, t)


def train_lr(root, t: dict) -> dict:
    """The LR model only: standardize per party, fit on the joined design, split the coefficients by party."""
    ids = joined_ids(t)[:N_TRAIN]
    X = {p: rows(t[p], ids) for p in PARTIES}
    y = pd.Series(t["bank"].y, index=t["bank"].ids).loc[ids].to_numpy()
    wd = {p: root / "state" / p / "jobs" / JOB for p in PARTIES}
    parts, Z = {}, []
    for p in PARTIES:
        st = Standardizer(clip=3.0).fit(X[p])
        parts[p] = {"features": list(t[p].feature_names), "preprocess": "standardized", "standardizer": st.to_dict()}
        Z.append(st.transform(X[p]))
    lr = LogisticRegressionGD(max_epochs=5, random_state=0).fit(np.hstack(Z), y)
    k = 0
    for p in PARTIES:
        n = len(parts[p]["features"])
        parts[p]["coef"] = lr.coef_[k:k + n].tolist()
        parts[p]["intercept"] = float(lr.intercept_) if p == "bank" else 0.0
        k += n
        save_lr_part(FileArtifacts(wd[p] / "lr"), parts[p], party=p, role="guest" if p == "bank" else "host",
                     guest="bank", hosts=list(HOSTS))
    return {"ids": ids, "parts": parts}


def train_woe(root, t: dict) -> dict:
    """A WOE scorecard LR: each party bins its own features, one LR on the joined WOE design, split by party."""
    ids = joined_ids(t)[:N_TRAIN]
    X = {p: rows(t[p], ids) for p in PARTIES}
    y = pd.Series(t["bank"].y, index=t["bank"].ids).loc[ids].to_numpy()
    parts, Z = {}, []
    for p in PARTIES:
        names = list(t[p].feature_names)
        bins = {f: fit_woe(X[p][:, j], y, name=f, max_bins=5, min_bin_count=50) for j, f in enumerate(names)}
        parts[p] = {"features": names, "preprocess": "woe", "bins": bins}
        Z.append(quantize(np.column_stack([bins[f].transform(X[p][:, j]) for j, f in enumerate(names)])))
    lr = LogisticRegressionGD(max_epochs=20, random_state=0).fit(np.hstack(Z), y)
    k = 0
    for p in PARTIES:
        n = len(parts[p]["features"])
        parts[p]["coef"] = lr.coef_[k:k + n].tolist()
        parts[p]["intercept"] = float(lr.intercept_) if p == "bank" else 0.0
        k += n
        save_lr_part(FileArtifacts(root / "state" / p / "jobs" / JOB / "woe"), parts[p], party=p,
                     role="guest" if p == "bank" else "host", guest="bank", hosts=list(HOSTS))
    return parts


class Fed:
    """In-process parties: ``fed.parties[name]``, ``fed.configs[name]``, ``fed.root``."""

    def __init__(self, root, data_dir, policies: dict[str, str], transport=None):
        self.root = root
        self.data_dir = data_dir
        self.configs = write_federation(root, data_dir, transport=transport or {"deadline": 5.0})
        for p, extra in policies.items():
            with open(self.configs[p], "a", encoding="utf-8") as fh:
                fh.write(extra)
        self.parties: dict[str, Party] = {}

    def start(self, name: str | None = None) -> None:
        for p in ([name] if name else PARTIES):
            self.parties[p] = Party(load_party_config(self.configs[p]))
            self.parties[p].start()

    def stop(self, name: str | None = None) -> None:
        for p in ([name] if name else list(self.parties)):
            party = self.parties.pop(p, None)
            if party is not None:
                party.stop(grace=0.5)


def scoring_federation(root, data) -> "Fed":
    """Bank + chain + gov, not started, with the scoring policies the scoring tests share
    (hosts serve the bank for loan applications, no rate limit in the way, no head exchange)."""
    host_pol = scoring_policy(requesters=["bank"], purposes=["loan-application"], max_requests_per_minute=100000,
                              head_exchange_seconds=0.0)
    bank_pol = scoring_policy(purposes=["loan-application"], head_exchange_seconds=0.0)
    f = Fed(root, data, {"bank": bank_pol, "chain": host_pol, "gov": host_pol})
    f.tables = tables(data)
    f.host_pol = host_pol
    return f
