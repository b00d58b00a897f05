"""Where the server's CPU goes, by stage of the report path: a py-spy profile summed.

    uv run python -m bench.loadgen --spawn --profile --duration 15   # records and prints it
    uv run python -m bench.stages /tmp/profile.raw                     # a raw profile recorded before

``record(pid, seconds, out)`` starts ``py-spy record`` (``--subprocesses``: every
worker of ``collector serve``; ``--nonblocking``: the server is not paused, so
some samples fail, and are left out; idle samples are not recorded) and
``summarise(raw)`` reads its raw output (``-f raw``: one line per distinct
stack, ``frame;frame;... count``) into ``{stage: percent of the busy
samples}``. Each sample goes to the innermost frame that names a stage
(``STAGES``, first match from the innermost frame out): the receipt's signature
inside the writer counts as ``receipt signature``, the rest of the writer as
``store``. Samples in no stage's frame are aiohttp's own work (HTTP parsing,
writing the answer) or the event loop (sockets, timers).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

#: (stage, substrings of a py-spy frame ``function (file:line)``), innermost match wins.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("receipt signature", ("ReceiptSigner.sign (",)),
    ("sealing (AES-GCM, zstd)", ("seal (collector/accounts/datakeys.py",)),
    ("parse (orjson)", ("parse_json (", "parse_exact (")),
    ("gate (validate, strip, fold)", ("check_report (", "Ingest.gate (")),
    ("body read and decoding", ("Ingest.read (", "read_body (")),
    ("kept JSON and rollup values", ("Ingest.pending (",)),
    ("auth (token, cache)", ("Ingest.authenticate (",)),
    ("admission", ("Ingest.admit (", "Ingest.reserve (")),
    ("store (group commit, asyncpg)", ("ReportWriter.", "asyncpg/")),
    ("answer and outcome", ("Ingest.receipt (", "Ingest.refused (", "outcomes.py")),
    ("http layer (middleware, metrics, JSON answer)", ("collector/http/", "prometheus_client/")),
    ("aiohttp (HTTP parse, write)", ("aiohttp/",)),
    ("logging", ("structlog/", "collector/ops/logs.py")),
]
OTHER = "event loop, sockets, other"


def record(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen | None:
    """Start ``py-spy record`` on ``pid`` and its children for ``seconds``; None when py-spy is missing."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", str(rate),
         "--duration", str(max(1, int(seconds))), "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for stage, marks in STAGES:
            if any(m in frame for m in marks):
                return stage
    return OTHER


def summarise(raw: Path) -> dict[str, float]:
    """``{stage: % of the busy samples}``, largest first (empty when there are none)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[stage_of(stack.split(";"))] += int(n)
    total = sum(counts.values())
    return {stage: round(100 * n / total, 1) for stage, n in counts.most_common()} if total else {}


def main(argv: list[str] | None = None) -> int:
    for path in argv if argv is not None else sys.argv[1:]:
        for stage, pct in summarise(Path(path)).items():
            print(f"{pct:5.1f} %  {stage}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
