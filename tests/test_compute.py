"""Compute backends without Dask: the local pool behind the interface, the current backend, config errors."""

from __future__ import annotations

import pickle
import sys
import textwrap
import threading

import numpy as np
import pytest

from fedcredit import compute
from fedcredit.compute import LocalBackend
from fedcredit.config import ComputeConfig, load_party_config
from fedcredit.crypto import pool
from fedcredit.crypto.partitioned import PartitionedCipherVector
from fedcredit.errors import ComputeError, ConfigError, DecryptionError, ProtocolError
from fedcredit.models.tree.histogram import build_histogram
from fedcredit.testing import small_keypair


@pytest.fixture(scope="module")
def keypair():
    return small_keypair(512)


def _add(a, b):
    return a + b


def _part_sum(part, k, extra):
    return sum(part) * k + extra


def test_local_backend_map_scatter_map_partitions():
    b = LocalBackend()
    assert b.n_workers >= 1 and not b.distributed
    assert b.map(_add, [(1, 2), (3, 4), (5, 6)]) == [3, 7, 11]
    assert b.map(_add, []) == []
    hs = b.scatter([[1, 2], [3], []])
    assert b.map_partitions(_part_sum, hs, 10, part_args=[(0,), (1,), (2,)]) == [30, 31, 2]
    b.replace(hs, [1], [[4]])
    assert b.map_partitions(_part_sum, hs, 1, part_args=[(0,)] * 3) == [3, 4, 0]
    b.free(hs)


def test_current_backend_default_override_per_thread():
    default = compute.current()
    assert isinstance(default, LocalBackend)
    other = LocalBackend()
    seen = {}
    with compute.using(other):
        assert compute.current() is other
        t = threading.Thread(target=lambda: seen.setdefault("thread", compute.current()))
        t.start()
        t.join()
    assert seen["thread"] is default  # `using` is per thread; other threads keep the process default
    assert compute.current() is default
    prev = compute.set_default(other)
    try:
        assert compute.current() is other
    finally:
        compute.set_default(prev)
    with pytest.raises(TypeError):
        compute.set_default("dask")


def test_key_bytes_are_redacted_but_usable(keypair):
    _, sk = keypair
    kb = sk._p_bytes
    assert isinstance(kb, pool.KeyBytes) and repr(kb) == str(kb) == "<key material>"
    assert repr((kb, 1)) == "(<key material>, 1)"
    back = pickle.loads(pickle.dumps(kb))
    assert type(back) is pool.KeyBytes and bytes(back) == bytes(kb) and int.from_bytes(back, "big") == sk._p


def test_partitioned_vector_on_local_backend_equals_in_process(keypair):
    pk, sk = keypair
    rng = np.random.default_rng(0)
    n = 300
    cv = pk.encrypt_ints(rng.integers(0, 2**20, n))
    codes = rng.integers(0, 5, (n, 3)).astype(np.uint8)
    rows = [rng.choice(n, 100, replace=False), np.arange(n)]
    with PartitionedCipherVector.from_blob(pk, cv.to_blob(), codes, backend=LocalBackend(), partition_rows=120) as pv:
        assert [hi - lo for lo, hi in pv.bounds] == [100, 100, 100]
        got = pv.histograms(rows, 5)
    for r, h in zip(rows, got):
        assert h.ciphertexts() == build_histogram(cv, codes, r, 5).ciphertexts()
    with pytest.raises(ComputeError, match="freed"):
        pv.histograms(rows, 5)


class _DistributedLocal(LocalBackend):
    """The local pool posing as a distributed backend (its partitions are held in this process)."""

    distributed = True


@pytest.mark.parametrize("scheme", ["paillier", "ou"])
def test_binned_rows_one_histograms_interface_for_both_backends(keypair, scheme):
    """Local and partitioned rows answer the same ``histograms(node_rows, n_bins)`` with the same sums,
    so the SecureBoost host does not branch on the backend; the backend alone picks the type."""
    from fedcredit.crypto.binned import BinnedCipherVector, binned_from_blobs
    from fedcredit.testing import small_ou_keypair

    pk, _ = keypair if scheme == "paillier" else small_ou_keypair(512)
    rng = np.random.default_rng(1)
    n = 90
    cv = pk.encrypt_ints(rng.integers(0, 2**20, n))
    codes = rng.integers(0, 4, (n, 2)).astype(np.uint8)
    blobs = [cv[lo:hi].to_blob() for lo, hi in [(0, 40), (40, 41), (41, n)]]  # arrives in parts
    node_rows = [rng.choice(n, 30, replace=False), np.arange(n), np.arange(0)]
    want = [build_histogram(cv, codes, r, 4).ciphertexts() for r in node_rows]
    with pytest.raises(ProtocolError, match="the parts hold 41 ciphertexts, the rows are 90"):
        binned_from_blobs(pk, iter(blobs[:2]), codes, backend=LocalBackend())
    with binned_from_blobs(pk, iter(blobs), codes, backend=LocalBackend()) as local:
        assert isinstance(local, BinnedCipherVector) and local.n_partitions == 0 and len(local) == n
        assert [h.ciphertexts() for h in local.histograms(node_rows, 4)] == want
    with binned_from_blobs(pk, iter(blobs), codes, backend=_DistributedLocal()) as dist:
        assert isinstance(dist, PartitionedCipherVector) and dist.n_partitions >= 1 and len(dist) == n
        assert [h.ciphertexts() for h in dist.histograms(node_rows, 4)] == want


def test_crypto_runs_inline_without_a_compute_backend(keypair):
    """crypto reaches the pool only through fedcredit._executor; with nothing installed it runs inline."""
    from fedcredit import _executor
    from fedcredit.crypto import parallel

    pk, sk = keypair
    assert _executor.current() is compute.current()  # installed by `import fedcredit.compute`
    _executor.install(None)
    try:
        assert parallel.pool_size() == 1 and not parallel.use_parallel(10_000, None)
        assert parallel.parallel_map(_add, [(1, 2), (3, 4)]) == [3, 7]
        assert parallel.submit_idle(_add, 1, 2) is None
        assert sk.decrypt_ints(pk.encrypt_ints([1, 2, 3], parallel=True)) == [1, 2, 3]
    finally:
        _executor.install(compute.current)
    assert _executor.current() is compute.current()


def test_partitioned_vector_rejects_foreign_or_bad_blobs(keypair):
    pk, sk = keypair
    other, _ = small_keypair(512, index=1)
    cv = other.encrypt_ints([1, 2, 3])
    with pytest.raises(DecryptionError):
        PartitionedCipherVector.from_blob(pk, cv.to_blob(), np.zeros((3, 1), np.uint8), backend=LocalBackend())
    blob = pk.encrypt_ints([1, 2, 3]).to_blob()
    bad = type(blob)(scheme=blob.scheme, key_fingerprint=blob.key_fingerprint, width=blob.width, count=3,
                     data=b"\x00" * len(blob.data), meta=dict(blob.meta))
    with pytest.raises(DecryptionError):  # zero is not a ciphertext: checked on the workers
        PartitionedCipherVector.from_blob(pk, bad, np.zeros((3, 1), np.uint8), backend=LocalBackend())
    with pytest.raises(ConfigError, match="codes must have shape"):
        PartitionedCipherVector.from_blob(pk, blob, np.zeros((2, 1), np.uint8), backend=LocalBackend())


def test_dask_backend_without_dask_says_how_to_install(monkeypatch):
    from fedcredit.compute.dask import DaskBackend

    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    with pytest.raises(ComputeError, match=r"pip install 'fedcredit\[dask\]'"):
        DaskBackend("tcp://127.0.0.1:8786").map(_add, [(1, 2)])


def test_from_config():
    assert isinstance(compute.from_config(ComputeConfig()), LocalBackend)
    d = compute.from_config(ComputeConfig(backend="dask", scheduler="tcp://127.0.0.1:8786", retries=3,
                                          partition_rows=5000))
    assert (d.name, d.distributed, d.scheduler, d.retries, d.partition_rows) == ("dask", True, "tcp://127.0.0.1:8786",
                                                                                 3, 5000)
    assert d.describe()["tls"] is False  # nothing connected yet: connecting happens on first use


BASE = """
[party]
name = "bank"
listen = "127.0.0.1:7301"
state_dir = "state"
insecure = true
"""


def _load(tmp_path, compute_toml: str):
    for f in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / f).write_text("x")
    p = tmp_path / "bank.toml"
    p.write_text(BASE + textwrap.dedent(compute_toml))
    return load_party_config(p)


def test_config_dask_ok(tmp_path):
    pytest.importorskip("distributed")
    c = _load(tmp_path, """
        [compute]
        backend = "dask"
        scheduler = "tls://10.0.0.5:8786"
        tls_ca = "ca.pem"
        tls_cert = "cert.pem"
        tls_key = "key.pem"
        retries = 2
    """).compute
    assert (c.backend, c.scheduler, c.retries, c.tls_ca.name) == ("dask", "tls://10.0.0.5:8786", 2, "ca.pem")
    assert c.summary()["tls_ca"].endswith("ca.pem")
    assert _load(tmp_path, '[compute]\nbackend = "dask"\nscheduler = "tcp://127.0.0.1:8786"\n').compute.insecure is False
    assert _load(tmp_path, '[compute]\nbackend = "dask"\n').compute.scheduler is None  # a local cluster


@pytest.mark.parametrize(
    "toml, key, match",
    [
        ('backend = "ray"', "[compute].backend", "unknown backend 'ray' (available: local, dask)"),
        ('backend = "local"\nscheduler = "tcp://127.0.0.1:1"', "[compute].scheduler", 'only used with backend = "dask"'),
        ('backend = "dask"\nscheduler = "10.0.0.5:8786"', "[compute].scheduler", "must look like tcp://host:port"),
        ('backend = "dask"\nscheduler = "tcp://10.0.0.5:8786"', "[compute].scheduler", "plain TCP to another host"),
        ('backend = "dask"\nscheduler = "tls://10.0.0.5:8786"\ntls_ca = "ca.pem"', "[compute].tls_cert",
         "a tls:// scheduler needs tls_ca, tls_cert and tls_key"),
        ('backend = "dask"\nscheduler = "tls://h:8786"\ntls_ca = "nope.pem"\ntls_cert = "cert.pem"\ntls_key = "key.pem"',
         "[compute].tls_ca", "file not found"),
        ('backend = "dask"\ntls_ca = "ca.pem"', "[compute].tls_ca", "only used with a tls:// scheduler"),
        ('backend = "dask"\nscheduler = "tls://h:8786"\ninsecure = true\ntls_ca = "ca.pem"\ntls_cert = "cert.pem"\n'
         'tls_key = "key.pem"', "[compute].insecure", "only applies to a tcp:// scheduler"),
        ('backend = "dask"\nretries = 11', "[compute].retries", "must be in 0..10"),
        ('backend = "dask"\npartition_rows = 10', "[compute].partition_rows", "must be in 1000..100000000"),
        ('backend = "local"\nworkers = 0', "[compute].workers", "must be in 1..256"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, toml, key, match):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "[compute]\n" + toml + "\n")
    hits = [p for p in info.value.problems if f"bank.toml: {key}:" in p and match in p]
    assert hits, info.value.problems


def test_config_dask_not_installed(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    with pytest.raises(ConfigError, match=r"\[compute\]\.backend: the Dask backend needs the dask extra: "
                                          r"pip install 'fedcredit\[dask\]'"):
        _load(tmp_path, '[compute]\nbackend = "dask"\n')


def test_encrypt_chunks_keeps_partitions_and_matches_in_process(keypair):
    pk, sk = keypair
    rng = np.random.default_rng(5)
    vals = rng.integers(0, 2**20, 250)
    codes = rng.integers(0, 4, (250, 2)).astype(np.uint8)
    chunks = [(vals[lo:lo + 100], codes[lo:lo + 100]) for lo in range(0, 250, 100)]
    for key in (sk, pk):
        with PartitionedCipherVector.encrypt_chunks(key, chunks, backend=LocalBackend()) as pv:
            assert pv.bounds[0][0] == 0 and pv.bounds[-1][1] == len(pv) == 250
            rows = np.arange(0, 250, 3)
            h = pv.histograms([rows], 4)[0]
        ref = np.zeros(8, dtype=np.int64)
        np.add.at(ref, codes[rows, 0], vals[rows])
        np.add.at(ref, 4 + codes[rows, 1], vals[rows])
        assert sk.decrypt_ints(h) == ref.tolist()


def test_encrypting_on_the_workers_is_paillier_only():
    """An OU vector reaches the workers as received parts (from_blobs); encrypting there is refused clearly."""
    from fedcredit.errors import ConfigError
    from fedcredit.testing import small_ou_keypair

    pk, sk = small_ou_keypair(512)
    for key in (pk, sk):
        with pytest.raises(ConfigError, match="Paillier keys only"):
            PartitionedCipherVector.encrypt_chunks(key, [([1, 2], np.zeros((2, 1), dtype=np.uint8))],
                                                   backend=_DistributedLocal())
