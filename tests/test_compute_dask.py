"""Dask backend: same sums and same SecureBoost trees as the local pool; worker deaths; no key material in logs.

One module-scoped ``distributed.LocalCluster`` of 3 worker processes on
loopback (started by the test), 1024-bit keys from ``fedcredit.testing``,
small synthetic data.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the Dask backend needs the dask extra: pip install 'fedcredit[dask]'")

from fedcredit import compute  # noqa: E402
from fedcredit.compute.dask import DaskBackend  # noqa: E402
from fedcredit.crypto.partitioned import PartitionedCipherVector  # noqa: E402
from fedcredit.crypto import parallel, pool  # noqa: E402
from fedcredit.errors import ComputeError  # noqa: E402
from fedcredit.models.tree.histogram import build_histogram  # noqa: E402
from fedcredit.protocols.secureboost import VerticalSecureBoost  # noqa: E402
from fedcredit.testing import small_keypair, small_ou_keypair  # noqa: E402
from fedcredit.transport.memory import run_local  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster():
    import dask

    # a task may see its worker die once and be re-run; the second death fails it (KilledWorker)
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        lc = distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None)
    client = distributed.Client(lc, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        lc.close()


@pytest.fixture
def backend(cluster):
    cluster.wait_for_workers(3, timeout=60)
    return DaskBackend(client=cluster, partition_rows=200, retries=1, task_timeout=120)


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(1024)


@pytest.fixture(scope="module", params=["paillier", "ou"])
def any_keypair(request, keypair):
    """Both additive schemes: a Dask host partitions either (OU since session 5)."""
    return keypair if request.param == "paillier" else small_ou_keypair(1024)


def _worker_pids(client) -> dict:
    return client.run(os.getpid)


# ------------------------------------------------------------------ worker-side helpers (pickled by reference)
def slow_double(x: int, seconds: float) -> tuple[int, int]:
    time.sleep(seconds)
    return 2 * x, os.getpid()


def die(_x) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------ equivalence
def test_vector_crypto_on_cluster_matches_local(backend, keypair):
    pk, sk = keypair
    vals = np.random.default_rng(0).integers(-(2**40), 2**40, 900)
    assert backend.n_workers == 3
    with compute.using(backend):
        assert compute.current() is backend and parallel.pool_size() == 3
        enc_owner = sk.encrypt_ints(vals, parallel=True)
        enc_pub = pk.encrypt_ints(vals, parallel=True)
        assert sk.decrypt_signed(enc_owner, parallel=True) == vals.tolist()
        assert sk.decrypt_signed(enc_pub, parallel=True) == vals.tolist()
        obf = enc_owner.obfuscate(parallel=True)
        assert obf.ciphertexts() != enc_owner.ciphertexts()
        assert sk.decrypt_signed(obf, parallel=True) == vals.tolist()
    # the same vector's histogram on the cluster and in this process: identical ciphertext products
    codes = np.random.default_rng(1).integers(0, 6, (900, 3)).astype(np.int64)
    local = enc_pub.histogram(codes, 6, parallel=False)
    with compute.using(backend):
        remote = enc_pub.histogram(codes, 6, parallel=True)
    assert remote.ciphertexts() == local.ciphertexts()


def test_partitioned_histograms_bit_identical(backend, any_keypair):
    pk, sk = any_keypair
    rng = np.random.default_rng(2)
    n = 1000
    cv = sk.encrypt_ints(rng.integers(0, 2**30, n))
    codes = rng.integers(0, 8, (n, 4)).astype(np.uint8)
    row_sets = [rng.choice(n, 300, replace=False), np.arange(0, n, 7), np.arange(0), np.arange(n)]
    with PartitionedCipherVector.from_blob(pk, cv.to_blob(), codes, backend=backend) as pv:
        assert len(pv.bounds) == 5  # 1000 rows / 200 per partition
        got = pv.histograms(row_sets, 8)
    for rows, h in zip(row_sets, got):
        ref = build_histogram(cv, codes, rows, 8)
        assert h.ciphertexts() == ref.ciphertexts()  # the same products mod n^2 (Paillier) or n (OU)
        assert h.to_blob().scheme == cv.to_blob().scheme
        assert sk.decrypt_ints(h) == sk.decrypt_ints(ref)


def test_partitioned_from_parts_same_partitions_and_sums(backend, any_keypair):
    """Parts of uneven sizes (cutting across partitions) give the partitions and sums of the whole blob."""
    from fedcredit.crypto.blob import CipherBlob
    from fedcredit.errors import ConfigError

    pk, sk = any_keypair
    rng = np.random.default_rng(5)
    n = 1000
    cv = sk.encrypt_ints(rng.integers(0, 2**30, n))
    codes = rng.integers(0, 8, (n, 3)).astype(np.uint8)
    cuts = [0, 1, 150, 199, 200, 201, 640, 999, 1000]
    parts = [cv[lo:hi].to_blob() for lo, hi in zip(cuts, cuts[1:])]
    row_sets = [rng.choice(n, 333, replace=False), np.arange(n)]
    with PartitionedCipherVector.from_blob(pk, cv.to_blob(), codes, backend=backend) as whole:
        ref = whole.histograms(row_sets, 8)
        bounds = whole.bounds
    seen = []

    def stream():
        for b in parts:
            seen.append(b.count)
            yield b

    with PartitionedCipherVector.from_blobs(pk, stream(), codes, backend=backend) as pv:
        assert pv.bounds == bounds and len(seen) == len(parts)
        for a, b in zip(pv.histograms(row_sets, 8), ref):
            assert a.ciphertexts() == b.ciphertexts()
        assert [pv._source(i)[0] for i in range(len(bounds))] == [
            cv.to_blob().data[lo * pk.width:hi * pk.width] for lo, hi in bounds]
    with pytest.raises(ConfigError, match="hold 999 ciphertexts, codes has 1000 rows"):
        PartitionedCipherVector.from_blobs(pk, parts[:-1], codes, backend=backend)
    with pytest.raises(ConfigError, match="more than the 999 ciphertexts"):
        PartitionedCipherVector.from_blobs(pk, parts, codes[:999], backend=backend)
    odd = CipherBlob(parts[1].scheme, parts[1].key_fingerprint, parts[1].width, parts[1].count, parts[1].data,
                     {"frac_bits": 3})
    with pytest.raises(ConfigError, match="differ in frac_bits"):
        PartitionedCipherVector.from_blobs(pk, [parts[0], odd] + parts[2:], codes, backend=backend)


def _vertical(n=500, seed=3):
    rng = np.random.default_rng(seed)
    Xg, Xh = rng.normal(size=(n, 3)), rng.normal(size=(n, 4))
    Xh[rng.random(n) < 0.05, 0] = np.nan
    z = Xg @ [0.8, -0.5, 0.1] + Xh @ [1.0, 0.0, -0.7, 0.3]
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return Xg, Xh, y


def _sbt(keypair, host_backend=None, **params):
    Xg, Xh, y = _vertical()
    from fedcredit.crypto import ou

    kw = dict(n_trees=2, max_depth=3, max_bins=16, he="ou" if isinstance(keypair[0], ou.PublicKey) else "paillier",
              **params)

    def host(ch):
        est = VerticalSecureBoost(**kw)
        if host_backend is None:
            return est.fit(ch, Xh, guest="bank")
        with compute.using(host_backend):
            return est.fit(ch, Xh, guest="bank")

    return run_local({"bank": lambda ch: VerticalSecureBoost(**kw).fit(ch, Xg, y, keypair=keypair), "host": host},
                     timeout=200)


@pytest.mark.parametrize("gh_part_rows", [None, 37])
def test_secureboost_dask_host_same_trees_as_local_host(backend, any_keypair, monkeypatch, gh_part_rows):
    keypair = any_keypair
    local = _sbt(keypair)
    calls = []
    orig = PartitionedCipherVector.histograms

    def spy(self, row_sets, n_bins):
        calls.append((len(self.bounds), len(row_sets)))
        return orig(self, row_sets, n_bins)

    monkeypatch.setattr(PartitionedCipherVector, "histograms", spy)
    # with 37-row parts the (g, h) of a tree arrives in 14 messages; the partitions are the same
    dask_run = _sbt(keypair, backend, gh_part_rows=gh_part_rows)
    assert calls and all(parts == 3 for parts, _ in calls)  # 500 training rows: one partition per worker
    a, b = local["bank"].model_, dask_run["bank"].model_
    assert len(a.trees) == len(b.trees) == 2
    for ta, tb in zip(a.trees, b.trees):
        assert [vars(n) for n in ta] == [vars(n) for n in tb]
    assert any(n.party == "host" for nodes in b.trees for n in nodes), "the host should win some splits"
    ha, hb = local["host"].model_, dask_run["host"].model_
    assert {k: vars(v) for k, v in ha.splits.items()} == {k: vars(v) for k, v in hb.splits.items()}


def test_unreachable_scheduler_fails_the_step_with_a_reason(keypair):
    dead = DaskBackend("tcp://127.0.0.1:9", timeout=2)
    with pytest.raises(ComputeError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        _sbt(keypair, dead)


# ------------------------------------------------------------------ faults
def test_worker_killed_mid_task_is_retried(backend, cluster):
    victim = next(iter(_worker_pids(cluster).values()))

    import threading

    def kill_soon():
        time.sleep(0.7)
        os.kill(victim, signal.SIGKILL)

    threading.Thread(target=kill_soon, daemon=True).start()
    out = backend.map(slow_double, [(i, 1.5) for i in range(6)])
    assert [v for v, _ in out] == [2 * i for i in range(6)]
    assert victim not in {p for _, p in out}  # the victim's task was re-run on another worker
    # the cluster and the backend keep serving
    assert backend.map(slow_double, [(5, 0.0), (6, 0.0)])[1][0] == 12


def test_task_whose_worker_always_dies_fails_cleanly(backend):
    with pytest.raises(ComputeError, match="a compute worker died running it every time it was tried"):
        backend.map(die, [(0,), (1,)])
    assert backend.map(slow_double, [(1, 0.0), (2, 0.0)])[0][0] == 2


def test_lost_partition_is_scattered_again(backend, cluster, keypair):
    pk, sk = keypair
    rng = np.random.default_rng(4)
    n = 600
    cv = sk.encrypt_ints(rng.integers(0, 2**30, n))
    codes = rng.integers(0, 5, (n, 2)).astype(np.uint8)
    rows = [np.arange(n)]
    ref = build_histogram(cv, codes, rows[0], 5).ciphertexts()
    with PartitionedCipherVector.from_blob(pk, cv.to_blob(), codes, backend=backend) as pv:
        assert pv.histograms(rows, 5)[0].ciphertexts() == ref
        holder = next(iter(cluster.who_has([pv._handles[0]]).values()))[0]
        os.kill(_worker_pids(cluster)[holder], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while pv._handles[0].status == "finished" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pv.histograms(rows, 5)[0].ciphertexts() == ref


def test_private_key_never_in_worker_logs(backend, cluster, keypair):
    pk, sk = keypair
    p_repr = repr(bytes(sk._p_bytes))
    # key bytes reach a worker as KeyBytes: whatever the worker prints of a task shows no key
    assert backend.map(repr, [(sk._p_bytes,), (sk._q_bytes,)]) == ["<key material>"] * 2
    # a failing owner task (width 0) makes the worker log "Compute Failed" with the task's repr
    with pytest.raises(ValueError):
        backend.map(pool.w_owner_decrypt, [(sk._p_bytes, sk._q_bytes, b"\x00" * 8, 0)] * 2)
    logs = "".join(str(rec) for recs in cluster.get_worker_logs().values() for rec in recs)
    assert "Compute Failed" in logs
    assert p_repr not in logs and p_repr[2:40] not in logs and str(int.from_bytes(sk._p_bytes, "big")) not in logs


def test_encrypt_chunks_on_cluster_never_gathers(backend, keypair):
    pk, sk = keypair
    rng = np.random.default_rng(6)
    vals = rng.integers(0, 2**20, 700)
    codes = rng.integers(0, 4, (700, 2)).astype(np.uint8)
    chunks = ((vals[lo:lo + 200], codes[lo:lo + 200]) for lo in range(0, 700, 200))
    with PartitionedCipherVector.encrypt_chunks(sk, chunks, backend=backend) as pv:
        assert len(pv.bounds) == 4 * 3 and all(h.status == "finished" for h in pv._handles)  # a partition per worker and chunk
        h = pv.histograms([np.arange(700)], 4)[0]
    ref = np.zeros(8, dtype=np.int64)
    np.add.at(ref, codes[:, 0], vals)
    np.add.at(ref, 4 + codes[:, 1], vals)
    assert sk.decrypt_ints(h) == ref.tolist()


def test_hetero_lr_bucket_matvec_on_cluster(backend, keypair):
    from fedcredit.protocols.hetero_lr._matvec import matvec

    pk, sk = keypair
    rng = np.random.default_rng(7)
    d = rng.integers(-(2**30), 2**30, 800)
    K = rng.integers(-3, 30, (800, 3))
    cv = pk.encrypt_ints(d)
    with compute.using(backend):
        got = matvec(cv, K, parallel=True)
    assert sk.decrypt_signed(got) == (K.T @ d).tolist()


def test_psi_blinding_on_cluster_is_byte_identical(backend):
    """PSI hashing and exponentiation split over the cluster give the in-process bytes; a bad peer point is a
    ProtocolError there too (not a compute failure)."""
    from fedcredit.crypto.psi import get_group, normalize_ids
    from fedcredit.errors import ProtocolError

    g = get_group("curve25519")
    a, b = g.new_key(), g.new_key()
    ids = normalize_ids([f"9144{i:014d}" for i in range(500)])
    one = g.blind(a, ids, b"s" * 16, parallel=False)
    with compute.using(backend):
        split = g.blind(a, ids, b"s" * 16, parallel=True)
        assert split == one
        assert g.exp(b, split, parallel=True) == g.exp(b, one, parallel=False)
        with pytest.raises(ProtocolError, match="not a point of Curve25519"):
            g.exp(b, one + (2).to_bytes(32, "little"), parallel=True)  # u = 2 lies on the twist


# ------------------------------------------------------------------ the local cluster speaks mutual TLS
def _add(a, b):
    return a + b


def test_local_cluster_is_tls_and_refuses_plain_clients():
    """Issue 23 item 10: the party's own local cluster receives p, q and PSI scalars; before, it listened
    on tcp://127.0.0.1 where any local process could connect and submit tasks."""
    b = DaskBackend(workers=1, timeout=30)
    try:
        assert b.map(_add, [(1, 2), (3, 4)]) == [3, 7]
        addr = b.client.scheduler.address
        assert addr.startswith("tls://127.0.0.1:") and b.describe()["tls"] is True
        with pytest.raises((OSError, TimeoutError)):  # a plain tcp client gets no further than the handshake
            distributed.Client(addr.replace("tls://", "tcp://"), timeout=3, set_as_default=False)
        with pytest.raises((OSError, TimeoutError, ValueError)):  # TLS without the cluster's certificate
            distributed.Client(addr, timeout=3, set_as_default=False,
                               security=distributed.security.Security.temporary())
    finally:
        b.close()
