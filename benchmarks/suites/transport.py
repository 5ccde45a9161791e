"""Loopback throughput of the mTLS gRPC transport for a 15 MB Paillier ciphertext vector (MB/s, median)."""

from __future__ import annotations

import argparse

from benchmarks import transport_throughput as tt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tt.add_arguments(parser)


def run(args: argparse.Namespace) -> dict:
    runs = 5 if getattr(args, "quick", False) else args.runs
    return tt.run_all(runs, args.count, args.width, args.chunk_kib)
