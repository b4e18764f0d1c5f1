"""`thrifty batch run|status|resume|cancel` in a real process, killed with SIGKILL and resumed."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson

from tests.batch.helpers import jsonl, openai_line
from tests.conftest import mock_config
from thrifty.testing.mock_upstream import MockUpstream

THRIFTY = [sys.executable, "-m", "thrifty.cli", "batch"]
CFG = "cache: {enabled: true}\ndedup: {enabled: true}\nbatch: {concurrency: 4, poll_seconds: 0.05, lease_seconds: 60}\n"


def _counts(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM batch_lines WHERE state = 'done'").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


async def test_run_killed_then_resumed_writes_every_line_once(upstream: MockUpstream, tmp_path: Path) -> None:
    config = tmp_path / "thrifty.yaml"
    config.write_text(mock_config(upstream, tmp_path, CFG))
    items = [openai_line(f"k{i:03d}", f"kill {i % 30} [slow 40]") for i in range(60)]
    (tmp_path / "in.jsonl").write_bytes(jsonl(items))
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*THRIFTY, "run", str(tmp_path / "in.jsonl"), "-o", str(out), "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while _counts(tmp_path / "ledger.db") < 8:  # well into the job
        assert time.monotonic() < deadline and proc.poll() is None
        await asyncio.sleep(0.05)  # the mock upstream answers on this loop
    proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(proc.wait)
    assert not out.exists()
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        job_id = conn.execute("SELECT id FROM batch_jobs").fetchone()[0]
    status = await asyncio.to_thread(subprocess.run, [*THRIFTY, "status", job_id, "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and f"batch {job_id}  in_progress" in status.stdout
    done = await asyncio.to_thread(subprocess.run, [*THRIFTY, "resume", job_id, "--config", str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "from cache" in done.stdout and "interactive" in done.stdout
    assert "line/s" in done.stderr or "it/s" in done.stderr or "60/60" in done.stderr  # the progress bar
    ids = [orjson.loads(x)["custom_id"] for x in out.read_text().splitlines()]
    assert ids == [f"k{i:03d}" for i in range(60)]
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM requests WHERE request_id LIKE ?",
                            (f"req_{job_id}_%",)).fetchone()
    assert rows == (60, 60)
    # 30 distinct texts. At the kill, up to `concurrency` (4) lines were in flight: each may be
    # asked again; and up to 4 answers were saved on their lines but not yet in the exact cache,
    # so a later line with the same text is asked again too. No more than that.
    assert 30 <= upstream.calls["openai"] <= 30 + 2 * 4


async def test_bad_input_names_the_line(upstream: MockUpstream, tmp_path: Path) -> None:
    config = tmp_path / "thrifty.yaml"
    config.write_text(mock_config(upstream, tmp_path, CFG))
    (tmp_path / "in.jsonl").write_bytes(jsonl([openai_line("a", "x"), openai_line("a", "y")]))
    r = await asyncio.to_thread(subprocess.run, [*THRIFTY, "run", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--config",
                        str(config)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "line 2: duplicate custom_id 'a'" in r.stderr
    with sqlite3.connect(tmp_path / "ledger.db") as conn:
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "batch_jobs" not in tables or conn.execute("SELECT COUNT(*) FROM batch_jobs").fetchone()[0] == 0
