"""Scaling curves: time and peak memory vs rows for PSI, SecureBoost per tree and hetero LR per epoch.

Two party processes (bank = guest, chain = host) over mTLS gRPC on loopback
(:func:`benchmarks.harness.run_processes`), 2048-bit Paillier keys, synthetic
data from :mod:`benchmarks.synth` (10 features per party, a known logistic
signal over both parties). For each row count: ECDH PSI of two id sets with
90 % overlap; one SecureBoost tree (depth 3, 32 bins); one epoch of two-party
hetero LR (batch 4000); and, in the parent process, the same tree and epoch
trained centrally on the joined arrays. Writes ``benchmarks/scale.png``.

``compute`` (issue #10, field ``result["compute"]``): one party's heavy work on
the Dask backend (``docs/compute.md``) with 1, 2 and 4 worker processes of a
``LocalCluster`` on loopback. For each row count the synthetic host table is
written once as Parquet (row groups of ``--chunk-rows``); a fresh party
process then reads it chunk by chunk (:func:`fedcredit.data.iter_table`),
bins each chunk, packs synthetic SecureBoost ``(g, h)`` per row and encrypts
them on the workers as the key owner, one partition per chunk kept on the
workers (:meth:`PartitionedCipherVector.encrypt_chunks`; nothing is gathered),
then builds the root histogram and the two depth-1 histograms from per-partition
tasks. Recorded: encryption and histogram throughput, the party process's peak
RSS and each worker's peak RSS (VmHWM), and the load average. Writes
``benchmarks/scale_compute.png`` (time and memory vs rows per worker count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PARTIES = ("bank", "chain")
PLOT = Path(__file__).resolve().parents[1] / "scale.png"
COMPUTE_PLOT = Path(__file__).resolve().parents[1] / "scale_compute.png"
ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", default="10000,100000", help="comma-separated row counts (1000000 is optional)")
    parser.add_argument("--features", type=int, default=10, help="features per party")
    parser.add_argument("--protocols", default="psi,secureboost,hetero_lr,compute",
                        help="any of psi, secureboost, hetero_lr (two party processes) and compute (Dask backend)")
    parser.add_argument("--compute-rows", default="100000,1000000", help="row counts of the compute (Dask) runs")
    parser.add_argument("--compute-workers", default="1,2,4", help="Dask worker processes per compute run")
    parser.add_argument("--compute-features", type=int, default=10, help="host features in the compute runs")
    parser.add_argument("--chunk-rows", type=int, default=50_000, help="rows per chunk / partition (compute runs)")
    parser.add_argument("--compute-plot", type=Path, default=COMPUTE_PLOT)
    parser.add_argument("--plot", type=Path, default=PLOT, help="PNG of the curves")
    parser.add_argument("--timeout", type=float, default=3600.0)


# --------------------------------------------------------------------------- party functions (child processes)

def _ids(n: int, side: str) -> list[str]:
    from benchmarks.synth import customer_id

    start = 0 if side == "guest" else n // 10  # 90 % overlap
    return [customer_id(i) for i in range(start, start + n)]


def psi_guest(channel, *, n: int, host: str) -> dict:
    from fedcredit.protocols.psi import run_guest

    ids = _ids(n, "guest")
    t = time.perf_counter()
    res = run_guest(channel, ids, hosts=[host])
    return {"protocol_seconds": time.perf_counter() - t, "intersection": res.size}


def psi_host(channel, *, n: int, guest: str) -> dict:
    from fedcredit.protocols.psi import run_host

    ids = _ids(n, "host")
    t = time.perf_counter()
    res = run_host(channel, ids, guest=guest)
    return {"protocol_seconds": time.perf_counter() - t, "intersection": res.size}


def sbt_party(channel, *, n: int, f: int, party: str) -> dict:
    from benchmarks.synth import aligned_party
    from fedcredit.protocols.secureboost import VerticalSecureBoost

    X, y = aligned_party(n, f, party, PARTIES)
    est = VerticalSecureBoost(n_trees=1, max_depth=3, learning_rate=0.3, max_bins=32)
    t = time.perf_counter()
    if y is not None:
        est.fit(channel, X, y, role="guest", hosts=list(PARTIES[1:]))
    else:
        est.fit(channel, X, role="host", guest=PARTIES[0])
    out = {"protocol_seconds": time.perf_counter() - t}
    if y is not None:
        out["keygen_seconds"] = est.result_.get("timings", {}).get("keygen")
        out["train_auc"] = (est.result_.get("train") or {}).get("auc")
    return out


def _lr_design(X):
    from fedcredit.models.logistic import Standardizer

    X = np.nan_to_num(X)
    return Standardizer(clip=3.0).fit(X).transform(X)


def lr_party(channel, *, n: int, f: int, party: str) -> dict:
    from benchmarks.synth import aligned_party
    from fedcredit.protocols.hetero_lr import VerticalLogisticRegression

    X, y = aligned_party(n, f, party, PARTIES)
    est = VerticalLogisticRegression(mode="two_party", max_epochs=1, batch_size=4000, validation_fraction=0.1)
    t = time.perf_counter()
    est.fit(channel, _lr_design(X), y, role="guest" if y is not None else "host", guest=PARTIES[0],
            hosts=list(PARTIES[1:]))
    return {"protocol_seconds": time.perf_counter() - t}


# --------------------------------------------------------------------------- parent

def _centralized(n: int, f: int) -> dict:
    from benchmarks.synth import aligned_party
    from fedcredit.models.logistic import LogisticRegressionGD
    from fedcredit.models.tree.gbdt import GBDTReference

    parts = [aligned_party(n, f, p, PARTIES) for p in PARTIES]
    X = np.concatenate([x for x, _ in parts], axis=1)
    y = parts[0][1]
    t = time.perf_counter()
    GBDTReference(n_trees=1, max_depth=3, learning_rate=0.3, max_bins=32).fit(X, y)
    tree = time.perf_counter() - t
    Xs = _lr_design(X)
    t = time.perf_counter()
    LogisticRegressionGD(max_epochs=1, batch_size=4000, validation_fraction=0.1).fit(Xs, y)
    return {"secureboost_tree_seconds": round(tree, 3), "hetero_lr_epoch_seconds": round(time.perf_counter() - t, 4)}


_ROLES = {
    "psi": ({"bank": "benchmarks.suites.scale:psi_guest", "chain": "benchmarks.suites.scale:psi_host"},
            lambda n, f: {"bank": {"n": n, "host": "chain"}, "chain": {"n": n, "guest": "bank"}}),
    "secureboost": ({p: "benchmarks.suites.scale:sbt_party" for p in PARTIES},
                    lambda n, f: {p: {"n": n, "f": f, "party": p} for p in PARTIES}),
    "hetero_lr": ({p: "benchmarks.suites.scale:lr_party" for p in PARTIES},
                  lambda n, f: {p: {"n": n, "f": f, "party": p} for p in PARTIES}),
}
_UNIT = {"psi": "PSI (whole run)", "secureboost": "SecureBoost, per tree", "hetero_lr": "hetero LR, per epoch"}


# --------------------------------------------------------------------------- compute backend runs (issue #10)

def _write_host_parquet(path: Path, n: int, f: int, chunk_rows: int) -> None:
    """The host's synthetic columns and the guest's label in one Parquet file (row groups of ``chunk_rows``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.synth import aligned_party, customer_id

    X, _ = aligned_party(n, f, "chain", PARTIES)
    _, y = aligned_party(n, 1, "bank", PARTIES)
    cols = {"id": [customer_id(i) for i in range(n)], "y": y.astype(np.int8)}
    cols.update({f"chain_x{j}": X[:, j] for j in range(f)})
    pq.write_table(pa.table(cols), path, row_group_size=chunk_rows)


def _vm(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def worker_peak_rss_mb() -> float:
    """VmHWM of the calling (worker) process."""
    return _vm("VmHWM")


def compute_child(path: str, n: int, workers: int, chunk_rows: int, key_bits: int = 2048) -> dict:
    """One party process: chunked read, encryption kept on the Dask workers, histograms from partitions."""
    import distributed

    from fedcredit.compute.dask import DaskBackend
    from fedcredit.crypto.partitioned import PartitionedCipherVector
    from fedcredit.crypto.paillier import generate_keypair
    from fedcredit.data import iter_table
    from fedcredit.models.tree.binning import BinMapper
    from fedcredit.models.tree.gbdt import logistic_gh, quantize_gh
    from fedcredit.protocols.secureboost.guest import GHCodec
    from fedcredit.protocols.secureboost.spec import GH_BITS

    max_bins = 32
    t = time.perf_counter()
    pk, sk = generate_keypair(key_bits)
    keygen = time.perf_counter() - t
    codec = GHCodec(n, key_bits - 1)  # plaintext bits of a Paillier key: |n| - 1
    mapper = None
    state = {"read": 0.0, "rows": 0, "g": 0, "h": 0}
    node_masks = []

    def chunks():
        nonlocal mapper
        it = iter_table(path, label_column="y", chunk_rows=chunk_rows)
        while True:
            t0 = time.perf_counter()
            c = next(it, None)
            if c is None:
                return
            if mapper is None:  # quantiles of the first chunk (a sample) for the whole table
                mapper = BinMapper(max_bins=max_bins).fit(c.X)
            codes = mapper.transform(c.X)
            ghq = quantize_gh(logistic_gh(c.y.astype(np.float64), np.zeros(len(c))), GH_BITS)
            node_masks.append(c.X[:, 0] <= 0.0)  # a depth-1 split for the histogram step
            state["g"] += int(ghq[:, 0].sum())
            state["h"] += int(ghq[:, 1].sum())
            state["read"] += time.perf_counter() - t0
            state["rows"] += len(c)
            yield codec.pack(ghq), codes

    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster, set_as_default=False)
    backend = DaskBackend(client=client, partition_rows=chunk_rows, task_timeout=7200)
    try:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        pv = PartitionedCipherVector.encrypt_chunks(sk, chunks(), backend=backend)
        enc = time.perf_counter() - t0 - state["read"]
        left = np.flatnonzero(np.concatenate(node_masks))
        f = pv._codes.shape[1]
        t0 = time.perf_counter()
        root = pv.histograms([np.arange(n)], max_bins)
        t_root = time.perf_counter() - t0
        t0 = time.perf_counter()
        pv.histograms([left, np.setdiff1d(np.arange(n), left)], max_bins)
        t_children = time.perf_counter() - t0
        # the root histogram is right: feature 0's bins add up to every row's packed (g, h)
        total = sum(sk.decrypt_signed(root[0][:max_bins]))
        root_ok = total == (state["g"] << codec.h_bits) + state["h"]
        worker_rss = sorted(client.run(worker_peak_rss_mb).values())
        pv.free()
    finally:
        client.close()
        cluster.close()
    return {
        "rows": n, "workers": workers, "features": f, "chunk_rows": chunk_rows, "partitions": len(pv.bounds),
        "key_bits": key_bits, "keygen_seconds": round(keygen, 2), "read_bin_pack_seconds": round(state["read"], 2),
        "encrypt_seconds": round(enc, 2), "encrypt_per_second": round(n / enc, 1),
        "root_histogram_seconds": round(t_root, 2), "depth1_histograms_seconds": round(t_children, 2),
        "histogram_row_features_per_second": round(2 * n * f / (t_root + t_children), 1),
        "root_histogram_decrypts_to_the_row_sums": bool(root_ok),
        "party_peak_rss_mb": _vm("VmHWM"), "worker_peak_rss_mb": worker_rss,
        "load_average_before": round(load, 2),
    }


def _compute_main() -> None:
    kw = json.loads(sys.argv[1])
    print("RESULT " + json.dumps(compute_child(**kw)), flush=True)


def run_compute(args: argparse.Namespace) -> dict:
    """Every (rows, workers) combination in a fresh party process."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return {"skipped": "the Dask backend needs the dask extra: pip install 'fedcredit[dask]'"}
    rows = [int(r) for r in str(args.compute_rows).split(",") if r]
    workers = [int(w) for w in str(args.compute_workers).split(",") if w]
    chunk = int(args.chunk_rows)
    if getattr(args, "quick", False):
        rows, workers, chunk = [2000, 6000], [1, 2], 1000
    runs = []
    with tempfile.TemporaryDirectory(prefix="fedcredit-scale-") as d:
        for n in rows:
            path = Path(d) / f"host_{n}.parquet"
            _write_host_parquet(path, n, args.compute_features, chunk)
            for w in workers:
                env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
                kw = {"path": str(path), "n": n, "workers": w, "chunk_rows": chunk}
                proc = subprocess.run([sys.executable, "-c", "from benchmarks.suites.scale import _compute_main; "
                                       "_compute_main()", json.dumps(kw)], capture_output=True, text=True, env=env,
                                      cwd=str(ROOT), timeout=args.timeout)
                line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    raise SystemExit(f"compute run {kw} failed:\n{proc.stderr[-3000:]}")
                r = json.loads(line[len("RESULT "):])
                runs.append(r)
                print(f"scale: compute {n:>8} rows {w} worker(s)  encrypt {r['encrypt_per_second']:>8.0f}/s  "
                      f"histogram {r['histogram_row_features_per_second']:>9.0f} row-features/s  "
                      f"worker peak {max(r['worker_peak_rss_mb']):.0f} MB  party peak {r['party_peak_rss_mb']:.0f} MB",
                      flush=True)
    out = {"backend": "dask LocalCluster (loopback), 1 thread per worker", "runs": runs}
    target = args.compute_plot
    if getattr(args, "quick", False) and target == COMPUTE_PLOT and getattr(args, "out", None):
        target = Path(args.out).with_name(Path(args.out).stem + "_compute.png")
    if target and runs:
        out["plot"] = str(plot_compute(runs, target))
    return out


def plot_compute(runs: list[dict], path: Path) -> Path:
    """Encryption time and per-worker / party peak memory vs rows, one line per worker count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = {1: "#1f5fa8", 2: "#e07b22", 4: "#2c9a56"}
    for w in sorted({r["workers"] for r in runs}):
        rs = sorted((r for r in runs if r["workers"] == w), key=lambda r: r["rows"])
        xs, c = [r["rows"] for r in rs], colors.get(w)
        ax.plot(xs, [r["encrypt_seconds"] for r in rs], marker="o", color=c, label=f"encrypt, {w} worker(s)")
        ax.plot(xs, [r["root_histogram_seconds"] + r["depth1_histograms_seconds"] for r in rs], marker="s", color=c,
                linestyle="--", label=f"root + depth-1 histograms, {w} worker(s)")
        ax2.plot(xs, [max(r["worker_peak_rss_mb"]) for r in rs], marker="o", color=c,
                 label=f"busiest worker, {w} worker(s)")
        ax2.plot(xs, [r["party_peak_rss_mb"] for r in rs], marker="s", linestyle="--", color=c,
                 label=f"party process, {w} worker(s)")
    for a, ylabel, title in ((ax, "seconds", "Dask backend: time vs rows (Paillier-2048, shared 2-core machine)"),
                             (ax2, "peak RSS (MB)", "peak memory vs rows")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("rows")
        a.set_ylabel(ylabel)
        a.set_title(title, fontsize=10)
        a.grid(True, which="both", color="#e3e8ee")
        a.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def run(args: argparse.Namespace) -> dict:
    from benchmarks.harness import run_processes

    rows = [int(r) for r in str(args.rows).split(",") if r]
    if getattr(args, "quick", False):
        rows = [2000, 5000]
    protocols = [p for p in str(args.protocols).split(",") if p]
    with_compute = "compute" in protocols
    protocols = [p for p in protocols if p != "compute"]
    unknown = set(protocols) - set(_ROLES)
    if unknown:
        raise SystemExit(f"unknown protocol(s) {sorted(unknown)}; known: {sorted(_ROLES)}")
    runs = []
    for n in rows:
        for proto in protocols:
            roles, kw = _ROLES[proto]
            load = os.getloadavg()[0]
            t = time.perf_counter()
            out = run_processes(roles, kw(n, args.features), timeout=args.timeout, job_id=f"scale-{proto}-{n}")
            wall = time.perf_counter() - t
            runs.append({
                "protocol": proto, "rows": n, "features_per_party": args.features,
                "seconds": round(max(out[p]["protocol_seconds"] for p in roles), 3),
                "seconds_with_process_start": round(wall, 2),
                "peak_rss_mb": {p: round(out[p]["peak_rss_mb"], 1) for p in roles},
                "bytes_sent": {p: int(out[p]["bytes_sent"]) for p in roles},
                "load_average_before": round(load, 2),
                **({"intersection": out["bank"]["intersection"]} if proto == "psi" else {}),
                **({"train_auc": out["bank"].get("train_auc")} if proto == "secureboost" else {}),
            })
            print(f"scale: {proto:<12} {n:>8} rows  {runs[-1]['seconds']:>8.2f} s  "
                  f"peak {max(runs[-1]['peak_rss_mb'].values()):.0f} MB", flush=True)
    centralized = {n: _centralized(n, args.features) for n in rows} if protocols else {}
    result = {"parties": list(PARTIES), "key_bits": 2048, "runs": runs,
              "centralized": {str(n): v for n, v in centralized.items()}}
    target = args.plot
    if getattr(args, "quick", False) and target == PLOT and getattr(args, "out", None):
        target = Path(args.out).with_suffix(".png")  # a smoke run does not replace the published curves
    if target and runs:
        result["plot"] = str(plot(runs, centralized, target))
    if with_compute:
        result["compute"] = run_compute(args)
    return result


def plot(runs: list[dict], centralized: dict, path: Path) -> Path:
    """Time vs rows (log-log) per protocol, and peak memory vs rows."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = {"psi": "#1f5fa8", "secureboost": "#e07b22", "hetero_lr": "#2c9a56"}
    for proto in dict.fromkeys(r["protocol"] for r in runs):
        rs = sorted((r for r in runs if r["protocol"] == proto), key=lambda r: r["rows"])
        xs = [r["rows"] for r in rs]
        ax.plot(xs, [r["seconds"] for r in rs], marker="o", color=colors.get(proto), label=_UNIT.get(proto, proto))
        ax2.plot(xs, [max(r["peak_rss_mb"].values()) for r in rs], marker="o", color=colors.get(proto),
                 label=_UNIT.get(proto, proto))
        key = {"secureboost": "secureboost_tree_seconds", "hetero_lr": "hetero_lr_epoch_seconds"}.get(proto)
        if key and centralized:
            ns = sorted(centralized)
            ax.plot(ns, [max(centralized[n][key], 1e-3) for n in ns], linestyle="--", color=colors.get(proto),
                    label=f"{_UNIT[proto]}, centralized")
    for a, ylabel, title in ((ax, "seconds", "time vs rows (2 processes, mTLS, Paillier-2048)"),
                             (ax2, "peak RSS of the busiest party (MB)", "peak memory vs rows")):
        a.set_xscale("log")
        a.set_xlabel("rows")
        a.set_ylabel(ylabel)
        a.set_title(title, fontsize=10)
        a.grid(True, which="both", color="#e3e8ee")
        a.legend(fontsize=7)
    ax.set_yscale("log")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
