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


async def test_files_outside_cannot_be_changed(tmp_path: pytest.TempPathFactory) -> None:
    import os
    from pathlib import Path

    victim = Path(str(tmp_path)) / "victim.txt"
    victim.write_text("keep me")
    for code in (f"import os\nos.remove({str(victim)!r})\n", f"import os\nos.rename({str(victim)!r}, 'mine.txt')\n",
                 f"import os\nos.chmod({str(victim)!r}, 0o777)\n", "import _posixsubprocess\n_posixsubprocess.fork_exec()\n",
                 "import sys\ndel sys.modules['_posixsubprocess']\nimport _posixsubprocess\n"):
        result = await run_python(code)
        assert result.returncode != 0 and "not allowed" in result.stderr, code
    assert victim.read_text() == "keep me"
    from thrifty.evals.sandbox import run_as_nobody

    if os.geteuid() == 0 and run_as_nobody():  # root may drop to nobody where the interpreter allows it
        who = await run_python("import os\nprint(os.getuid())\n")
        assert who.as_nobody and who.stdout.strip() in {"0", "65534"}  # 0 = nobody mapped in its user namespace
