"""The code sandbox: untrusted code meets its time, memory and network limits."""

from __future__ import annotations

import socket

import pytest

from thrifty.evals.graders import grade
from thrifty.evals.sandbox import Limits, run_python


async def test_infinite_loop_is_killed() -> None:
    result = await run_python("while True:\n    pass\n", Limits(timeout_s=1.0))
    assert result.timed_out and result.killed_reason == "time limit"
    assert result.duration_s < 5
    g = await grade({"type": "code", "tests": "assert True", "timeout": 1}, "while True: pass")
    assert g.status == "fail" and "time limit" in g.detail


async def test_memory_hog_is_stopped() -> None:
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))\n"
    result = await run_python(hog, Limits(timeout_s=5.0, memory_mb=200))
    assert not result.ok and result.killed_reason == "memory limit"


async def test_network_is_refused() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    code = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\nprint('connected')\n"
    result = await run_python(code, Limits(timeout_s=3.0))
    assert result.returncode != 0 and "connected" not in result.stdout
    # a connection that had been made would be waiting in the listen backlog
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.accept()
    server.close()


async def test_no_subprocess_no_writes_outside_no_parent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRIFTY_SECRET_FOR_TEST", "hunter2")
    spawn = await run_python("import subprocess\nsubprocess.run(['true'])\n")
    assert spawn.returncode != 0 and "not allowed" in spawn.stderr
    write = await run_python("open('/tmp/thrifty-sandbox-escape', 'w').write('x')\n")
    assert write.returncode != 0 and "not allowed" in write.stderr
    env = await run_python("import os\nprint(os.environ.get('THRIFTY_SECRET_FOR_TEST'))\n")
    assert env.ok and env.stdout.strip() == "None"
    local = await run_python("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())\n")
    assert local.ok and local.stdout.strip() == "ok"


async def test_output_is_capped() -> None:
    result = await run_python("print('x' * 10_000_000)\n", Limits(max_output_bytes=1000))
    assert result.ok and len(result.stdout) == 1000


async def test_audit_hook_refuses_sockets_even_without_a_network_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    from thrifty.evals import sandbox

    monkeypatch.setattr(sandbox, "network_namespace_available", lambda: False)
    result = await run_python("import socket\nsocket.socket()\n")
    assert not result.network_namespace
    assert result.returncode != 0 and "sandbox: socket.__new__ is not allowed" in result.stderr
