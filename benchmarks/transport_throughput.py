"""Loopback throughput of the mTLS gRPC transport for a Paillier-sized ciphertext vector.

Two party processes (``benchmarks.harness``) on 127.0.0.1 with mutual TLS.
The sender pushes a :class:`~fedcredit.crypto.blob.CipherBlob` of
``count × width`` bytes (default 30,000 × 512 = 15.36 MB, a Paillier-2048
vector) through ``Channel.send``; the receiver takes it with ``Channel.recv``
and answers with a one-byte acknowledgement. One run is the time from
``send`` to the acknowledgement, so it includes serialization, SHA-256,
chunking, TLS, reassembly, digest check and deserialization. The first
transfer (TLS handshake, connection set-up) is a warm-up and not counted.

Also measured in-process: the serde cost (encode + decode of the same blob)
and the in-memory Channel, as the floor every transport pays.

MB = 10**6 bytes.

Usage::

    python benchmarks/transport_throughput.py [--runs 7] [--out benchmarks/results/transport.json]
    python benchmarks/run.py transport --out benchmarks/results/transport.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_COUNT, DEFAULT_WIDTH = 30_000, 512


def _blob(count: int, width: int, seed: int = 0):
    import numpy as np

    from fedcredit.crypto.blob import CipherBlob

    data = np.random.default_rng(seed).bytes(count * width)
    return CipherBlob("paillier", bytes(32), width, count, data, {"exponent": -16})


# --------------------------------------------------------------------------- roles (run in party processes)

def sender(channel, runs: int, count: int, width: int) -> dict:
    blob = _blob(count, width)
    seconds = []
    for i in range(runs + 1):  # run 0 is the warm-up
        t0 = time.perf_counter()
        channel.send("receiver", f"blob-{i}", blob)
        channel.recv("receiver", f"ack-{i}")
        seconds.append(time.perf_counter() - t0)
    return {"warmup_seconds": seconds[0], "run_seconds": seconds[1:]}


def receiver(channel, runs: int, count: int, width: int) -> dict:
    ok = True
    for i in range(runs + 1):
        b = channel.recv("sender", f"blob-{i}")
        ok &= b.count == count and len(b.data) == count * width
        channel.send("sender", f"ack-{i}", 1)
    return {"intact": bool(ok)}


# --------------------------------------------------------------------------- measurements

def measure_grpc(runs: int = 7, count: int = DEFAULT_COUNT, width: int = DEFAULT_WIDTH,
                 chunk_bytes: int | None = None, timeout: float = 300.0) -> dict:
    """Median MB/s of ``runs`` transfers between two processes over mTLS."""
    from benchmarks.harness import run_processes

    kw = {"runs": runs, "count": count, "width": width}
    out = run_processes(
        {"sender": "benchmarks.transport_throughput:sender", "receiver": "benchmarks.transport_throughput:receiver"},
        {"sender": kw, "receiver": kw},
        timeout=timeout,
        job_id="transport-bench",
        transport={"chunk_bytes": chunk_bytes} if chunk_bytes else None,
    )
    if not out["receiver"]["intact"]:
        raise RuntimeError("payload did not arrive intact")
    secs = out["sender"]["run_seconds"]
    nbytes = count * width
    rates = [nbytes / s / 1e6 for s in secs]
    return {
        "payload_bytes": nbytes,
        "runs": runs,
        "chunk_bytes": chunk_bytes,
        "mb_per_s_median": round(statistics.median(rates), 1),
        "mb_per_s_min": round(min(rates), 1),
        "mb_per_s_max": round(max(rates), 1),
        "seconds_median": round(statistics.median(secs), 4),
        "warmup_seconds": round(out["sender"]["warmup_seconds"], 4),
        "peak_rss_mb": {p: out[p]["peak_rss_mb"] for p in out},
    }


def measure_inprocess(runs: int = 7, count: int = DEFAULT_COUNT, width: int = DEFAULT_WIDTH) -> dict:
    """Serde encode/decode cost and the in-memory Channel for the same blob."""
    from fedcredit.transport import serde
    from fedcredit.transport.memory import MemoryHub

    blob = _blob(count, width)
    enc, dec, mem = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        data = serde.encode(blob)
        t1 = time.perf_counter()
        back = serde.decode(data)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
        if back.data != blob.data:
            raise RuntimeError("serde round trip changed the payload")
    hub = MemoryHub(["a", "b"])
    ca, cb = hub.channel("a"), hub.channel("b")
    for i in range(runs):
        t0 = time.perf_counter()
        ca.send("b", f"m-{i}", blob)
        cb.recv("a", f"m-{i}")
        mem.append(time.perf_counter() - t0)
    nbytes = count * width
    return {
        "serde_encode_ms_median": round(statistics.median(enc) * 1e3, 2),
        "serde_decode_ms_median": round(statistics.median(dec) * 1e3, 2),
        "serde_mb_per_s": round(nbytes / (statistics.median(enc) + statistics.median(dec)) / 1e6, 1),
        "memory_channel_mb_per_s_median": round(nbytes / statistics.median(mem) / 1e6, 1),
    }


def run_all(runs: int = 7, count: int = DEFAULT_COUNT, width: int = DEFAULT_WIDTH,
            chunk_kib: list[int] | None = None) -> dict:
    import os

    result = {
        "loadavg_1m_before": round(os.getloadavg()[0], 2),
        "what": f"CipherBlob of {count} x {width} bytes between two processes, mTLS gRPC on 127.0.0.1; MB = 1e6 bytes",
        "grpc": measure_grpc(runs, count, width),
        "inprocess": measure_inprocess(runs, count, width),
    }
    if chunk_kib:
        result["chunk_sizes"] = {
            str(k): measure_grpc(runs, count, width, chunk_bytes=k * 1024)["mb_per_s_median"] for k in chunk_kib
        }
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=7, help="timed transfers (after one warm-up); median reported")
    p.add_argument("--count", type=int, default=DEFAULT_COUNT, help="ciphertexts in the vector")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="bytes per ciphertext")
    p.add_argument("--chunk-kib", type=int, nargs="*", default=None,
                   help="also measure these chunk sizes (KiB), e.g. --chunk-kib 256 1024 4096")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "transport.json")
    a = p.parse_args(argv)
    result = run_all(a.runs, a.count, a.width, a.chunk_kib)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
