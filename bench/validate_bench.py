"""Micro-benchmark: parse + privacy gate of one statistics record, in one process.

Times ``check_report(orjson.loads(body))`` on the real fixtures
(``tests/fixtures/report-8.7.0.json``, ``report-6.8.0.json``): ``--runs`` runs of
``--calls`` calls each, and prints the median (and the spread) of the runs in
ms per call, plus the parse alone for reference. With ``--refused`` it also
times a refused record (one bad value: the fast path gives up and pydantic
lists the violations).

    uv run python bench/validate_bench.py [--runs 7] [--calls 500] [--refused]

Target: <= 0.12 ms (8.7.0) and <= 0.15 ms (6.8.0) per call, median, on the
2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.gate.model import SchemaViolation, check_report  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def _runs(fn, runs: int, calls: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        out.append((time.perf_counter() - t) / calls * 1000)
    return out


def _show(label: str, runs: list[float]) -> None:
    print(f"{label:34s} median {statistics.median(runs):.4f} ms  (min {min(runs):.4f}, max {max(runs):.4f})")


def _refusing(body: bytes) -> None:
    doc = orjson.loads(body)
    doc["deploy"]["platform"] = "ops@acme-corp.example"
    try:
        check_report(doc)
    except SchemaViolation:
        return
    raise AssertionError("the record should have been refused")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--refused", action="store_true", help="also time a refused record")
    args = ap.parse_args()
    for name in ("report-8.7.0.json", "report-6.8.0.json"):
        body = (FIXTURES / name).read_bytes()
        check_report(orjson.loads(body))  # warm the rule caches
        _show(f"{name} parse + check", _runs(lambda: check_report(orjson.loads(body)), args.runs, args.calls))
        _show(f"{name} parse only", _runs(lambda: orjson.loads(body), args.runs, args.calls))
        if args.refused:
            _show(f"{name} refused (one bad value)", _runs(lambda: _refusing(body), args.runs, args.calls // 5 or 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
