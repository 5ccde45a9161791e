"""What each step kind reveals to whom: the short text the approval queue shows an operator.

Condensed from the README's "Protocols, and exactly what each role learns"
tables (the full statements, with the known leakage, are there and in
``docs/<protocol>.md``). One row per step kind and role; a step kind or role
not listed here is shown as "see the protocol's documentation", never as
"nothing". Keep this table in step with the README when a protocol changes
what a role learns.
"""

from __future__ import annotations

__all__ = ["REVEALS", "reveals"]

#: ``{step kind: {role: what that role learns}}``.
REVEALS: dict[str, dict[str, str]] = {
    "psi": {
        "guest": "the N-way intersection of ids (its own ids in it), every host's set size, which of its ids "
                 "each host holds (pairwise)",
        "host": "its own ids in the intersection, the intersection size, the guest's set size",
    },
    "binning": {
        "guest": "for each host feature: the number of bins, rows and events per bin (hence WOE/IV); "
                 "no thresholds, no row's bin",
        "host": "the guest's public key, E(y) (encrypted labels), WOE/IV of its own bins",
    },
    "select": {
        "guest": "every feature's IV",
        "host": "which of its own features were kept",
    },
    "secureboost": {
        "guest": "per host split: the winning feature index and bin, the node's left/right row partition; "
                 "decrypted per-bin (g, h) sums over >= min_node_rows rows",
        "host": "encrypted gradients only; the partition of training rows into tree nodes it builds "
                "histograms for (node membership)",
    },
    "hetero_lr": {
        "guest": "its own gradient per batch (aggregates over the batch), the validation loss per epoch",
        "host": "its own gradient per batch (an aggregate of residuals), values it cannot decrypt, "
                "whether training stopped",
        "arbiter": "values masked uniformly, the number of rows, batches and epochs",
    },
    "scorecard": {"guest": "nothing new", "host": "nothing new"},
    "evaluate": {
        "guest": "the final score of every aligned row (with one host this equals the host's partial score)",
        "host": "nothing",
    },
    "homo": {
        "client": "the global model each round, the rosters, its peers' public keys",
        "aggregator": "the rosters and the sum of the clients' updates and row counts (secagg/ckks); "
                      "each client's update in plain mode",
    },
    "handshake": {"guest": "every party's row count (table size)", "host": "the list of the job's parties",
                  "arbiter": "the list of the job's parties", "client": "the list of the job's parties",
                  "aggregator": "the list of the job's parties"},
}

_UNKNOWN = "not summarized here: see the protocol's documentation (docs/) before approving"


def reveals(kind: str, roles: dict[str, str]) -> dict[str, str]:
    """``{party: what it learns}`` in one step of ``kind`` among parties with ``roles`` ({party: role})."""
    table = REVEALS.get(kind, {})
    return {p: table.get(r, _UNKNOWN) for p, r in roles.items()}
