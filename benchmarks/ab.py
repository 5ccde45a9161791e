"""Before/after in the same run: one suite on two revisions, interleaved.

Usage::

    python benchmarks/ab.py --base 1b4bc26 --suites secureboost,hetero_lr,homo,scoring \\
        --repeats 2 --out benchmarks/results/ab.json -- --quick

Both revisions (the base and this checkout's HEAD commit) are checked out into
temporary git worktrees next to this one; each repeat
runs ``benchmarks/run.py SUITE`` once on the base tree and once on this tree
(alternating which goes first), each in its own interpreter with
``PYTHONPATH`` pointing at that tree, so both see the same machine load. The
headline figures of each suite (seconds per tree / epoch / round, applicants
per second, p99) are read from the suite's JSON, and the report gives the
median of each figure per revision, the ratio head/base and the load average
before every run. Arguments after ``--`` go to every suite run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Leaf keys that are a suite's headline figures (lower is better unless listed in HIGHER).
HEADLINE = re.compile(r"(seconds_per_tree|seconds_per_epoch|median_round_seconds|applicants_per_second|p99_ms"
                      r"|^runs\[(paillier|ou)\]\.seconds)$")  # the last: the binning suite's one record per scheme
HIGHER = re.compile(r"applicants_per_second$")


def _leaves(obj, path=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            names = [v[k] for k in ("config", "he") if isinstance(v, dict) and isinstance(v.get(k), str)]
            label = "/".join(names) if names else i
            yield from _leaves(v, f"{path}[{label}]")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield path, float(obj)


def headline(result: dict) -> dict[str, float]:
    """The headline figures of one suite result, by their JSON path."""
    return {p: v for p, v in _leaves(result) if HEADLINE.search(p)}


def _run(tree: Path, suite: str, extra: list[str], out: Path, timeout: float) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(tree / "benchmarks" / "run.py"), suite, "--out", str(out), *extra]
    proc = subprocess.run(cmd, cwd=str(tree), env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{suite} on {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())["result"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--base", required=True, help="the 'before' git revision")
    p.add_argument("--suites", default="secureboost,hetero_lr,homo,scoring")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per suite run")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    base_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", args.base], capture_output=True, text=True,
                              check=True).stdout.strip()
    head_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    report: dict = {"base": base_rev, "head": head_rev, "suite_args": extra, "repeats": args.repeats, "suites": {}}
    with tempfile.TemporaryDirectory(prefix="fedcredit-ab-") as tmp:
        # a sibling of this checkout, so data found next to the repository (../shared) is found for both trees
        base_tree = ROOT.parent / f"{ROOT.name}-ab-base-{base_rev[:10]}"
        head_tree = ROOT.parent / f"{ROOT.name}-ab-head-{head_rev[:10]}"  # HEAD as committed, not the live tree
        for tree, rev in ((base_tree, base_rev), (head_tree, head_rev)):
            if tree.exists():  # left by an interrupted run
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
        try:
            for suite in [s for s in args.suites.split(",") if s]:
                runs: dict[str, list[dict]] = {"base": [], "head": []}
                loads: list[float] = []
                for k in range(args.repeats):
                    order = [("base", base_tree), ("head", head_tree)]
                    if k % 2:
                        order.reverse()
                    for name, tree in order:
                        loads.append(os.getloadavg()[0])
                        t0 = time.perf_counter()
                        res = _run(tree, suite, extra, Path(tmp) / f"{suite}-{name}-{k}.json", args.timeout)
                        print(f"{suite} {name} #{k}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
                        runs[name].append(headline(res))
                figures = {}
                for path in sorted(set().union(*runs["base"], *runs["head"])):
                    b = [r[path] for r in runs["base"] if path in r]
                    h = [r[path] for r in runs["head"] if path in r]
                    if not b or not h:
                        continue
                    mb, mh = statistics.median(b), statistics.median(h)
                    cost = (mb / mh if HIGHER.search(path) else mh / mb) if mb and mh else None
                    figures[path] = {"base_median": mb, "head_median": mh, "base": b, "head": h,
                                     "cost_ratio": None if cost is None else round(cost, 3)}
                report["suites"][suite] = {"figures": figures, "load_average_before_runs": loads}
        finally:
            for tree in (base_tree, head_tree):
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for suite, r in report["suites"].items():
        for path, f in r["figures"].items():
            print(f"{suite:12s} {path:70s} base {f['base_median']:10.4g}  head {f['head_median']:10.4g}  "
                  f"cost x{f['cost_ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
