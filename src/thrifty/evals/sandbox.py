"""A sandbox for grading generated code: a separate, limited, offline Python process.

Model-written code is untrusted. It runs in a child process that has
- its own session (process group), killed as a whole when the wall-clock limit passes;
- when thrifty runs as root, the identity of `nobody` (so file permissions apply to it);
- `setrlimit` caps on address space (memory), CPU seconds, file size, open files and core dumps
  (set by `prlimit` before the interpreter starts, or between fork and exec without it);
- no network: a fresh network namespace (`unshare -rn`) where the kernel allows it, and in
  every case an audit hook that refuses sockets, subprocesses, `exec`, `fork` and `ctypes`
  (and `_posixsubprocess.fork_exec`, which raises no audit event, is replaced);
- a fresh temporary directory as its working directory (removed afterwards), the only place
  where it may create, change or remove files, and an environment with nothing of the
  parent's in it;
- `python -I` (isolated mode: no user site, no PYTHON* variables).
Nothing here ever runs the code without these limits: if a limit cannot be set the child
exits before the code is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: Runs first in the child: installs the guard, then runs program.py as __main__.
_BOOTSTRAP = r'''
import os.path
import sys

_ROOT = sys.argv[1]
_BLOCKED_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                     "os.forkpty", "os.system", "os.kill", "os.killpg", "ctypes.", "pty.", "webbrowser.",
                     "urllib.Request", "http.client.", "ftplib.", "smtplib.", "imaplib.", "poplib.",
                     "telnetlib.", "nntplib.", "os.setrlimit", "resource.setrlimit", "resource.prlimit",
                     "sys.addaudithook", "os.chdir", "shutil.rmtree")


# _posixsubprocess.fork_exec starts programs without an audit event: it is loaded here, before
# the program runs, and replaced; loading a fresh copy of it is refused.
_BLOCKED_MODULES = {"_posixsubprocess"}
_PATH_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
                "os.link", "os.truncate", "os.utime", "os.chflags", "os.lchflags", "os.mkfifo", "os.mknod"}


def _inside(path):
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    if not isinstance(path, str):
        return True  # file descriptors: already opened under these rules
    p = os.path.realpath(path)
    return p == _ROOT or p.startswith(_ROOT + "/")


def _guard(event, args):
    if event.startswith(_BLOCKED_PREFIXES):
        raise PermissionError("sandbox: %s is not allowed" % event)
    if event == "import" and args and args[0] in _BLOCKED_MODULES:
        raise PermissionError("sandbox: importing %s is not allowed" % args[0])
    if event == "open" and args:
        path, mode, flags = args[0], args[1], args[2]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & 3 != 0)
        if writing and not _inside(path):
            raise PermissionError("sandbox: writing outside the sandbox directory is not allowed")
    if event in _PATH_EVENTS:
        for arg in args:
            if isinstance(arg, (str, bytes)) and not _inside(arg):
                raise PermissionError("sandbox: %s outside the sandbox directory is not allowed" % event)


import _posixsubprocess
import subprocess


def _no_fork_exec(*args, **kwargs):
    raise PermissionError("sandbox: starting programs is not allowed")


_posixsubprocess.fork_exec = _no_fork_exec
_source = open(_ROOT + "/program.py", encoding="utf-8").read()
_code = compile(_source, "program.py", "exec")
sys.addaudithook(_guard)
del sys.argv[1:]
exec(_code, {"__name__": "__main__", "__builtins__": __builtins__})
'''


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 5.0
    memory_mb: int = 256
    max_output_bytes: int = 64 * 1024
    max_file_mb: int = 16
    max_open_files: int = 64


@dataclass
class SandboxResult:
    returncode: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False
    #: why the run ended badly, in words: "time limit", "memory limit", "cpu limit", "signal N"
    killed_reason: str | None = None
    network_namespace: bool = False
    as_nobody: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


NOBODY = 65534


def _nobody_prefix() -> list[str] | None:
    """`setpriv` to become nobody, as a command prefix (no Python between fork and exec)."""
    exe = shutil.which("setpriv")
    if exe is None:
        return None
    return [exe, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def _unshare_prefix() -> list[str] | None:
    exe = shutil.which("unshare")
    return None if exe is None else [exe, "-rn", "--"]


@functools.lru_cache(maxsize=1)
def isolation() -> tuple[bool, bool]:
    """(run as nobody, own network namespace): the strongest pair that works on this machine.

    Each candidate is tried by starting the interpreter exactly as the sandbox will. Dropping
    to nobody is only tried when running as root; a network namespace needs unprivileged user
    namespaces (or root).
    """
    nobody, netns = _nobody_prefix(), _unshare_prefix()
    candidates: list[tuple[bool, bool]] = []
    if os.geteuid() == 0 and nobody is not None and netns is not None:
        candidates.append((True, True))
    if netns is not None:
        candidates.append((False, True))
    if os.geteuid() == 0 and nobody is not None:
        candidates.append((True, False))
    for as_nobody, use_netns in candidates:
        cmd = [*(nobody or [] if as_nobody else []), *(netns or [] if use_netns else []), sys.executable, "-I", "-c", "pass"]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return as_nobody, use_netns
    return False, False


def run_as_nobody() -> bool:
    return isolation()[0]


def network_namespace_available() -> bool:
    return isolation()[1]


def _numbers(limits: Limits) -> tuple[int, int, int]:
    mem = limits.memory_mb * 1024 * 1024
    cpu = max(1, int(limits.timeout_s) + 1)
    fsize = limits.max_file_mb * 1024 * 1024
    return mem, cpu, fsize


def _prlimit_prefix(limits: Limits) -> list[str] | None:
    """`prlimit` setting every limit, as a command prefix; None where it is not installed."""
    exe = shutil.which("prlimit")
    if exe is None:
        return None
    mem, cpu, fsize = _numbers(limits)
    n = limits.max_open_files
    return [exe, f"--as={mem}", f"--cpu={cpu}:{cpu + 1}", f"--fsize={fsize}", "--core=0", f"--nofile={n}", "--"]


def _apply_limits(limits: Limits) -> None:
    """The fallback without `prlimit`: runs in the child between fork and exec (any failure
    aborts the exec). Python code there is not safe next to threads, hence the preference."""
    mem, cpu, fsize = _numbers(limits)
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))


async def _drain(stream: asyncio.StreamReader | None, cap: int) -> bytes:
    """Read a pipe to its end, keeping at most `cap` bytes (the rest is read and dropped)."""
    if stream is None:
        return b""
    kept = bytearray()
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return bytes(kept)
        if len(kept) < cap:
            kept.extend(chunk[: cap - len(kept)])


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def run_python(source: str, limits: Limits | None = None) -> SandboxResult:
    """Run Python `source` in the sandbox and report how it ended."""
    limits = limits or Limits()
    workdir = Path(tempfile.mkdtemp(prefix="thrifty-sandbox-"))
    root = str(workdir.resolve())
    (workdir / "program.py").write_text(source, encoding="utf-8")
    (workdir / "bootstrap.py").write_text(_BOOTSTRAP, encoding="utf-8")
    as_nobody = run_as_nobody()
    use_netns = network_namespace_available()
    if as_nobody:
        os.chown(workdir, NOBODY, NOBODY)
    cmd = [sys.executable, "-I", "-X", "utf8", str(workdir / "bootstrap.py"), root]
    if use_netns:
        cmd = [*(_unshare_prefix() or []), *cmd]
    if as_nobody:
        cmd = [*(_nobody_prefix() or []), *cmd]
    prlimit = _prlimit_prefix(limits)
    if prlimit is not None:
        cmd = [*prlimit, *cmd]
    env = {"PATH": "/usr/bin:/bin", "HOME": root, "TMPDIR": root, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    started = time.perf_counter()
    timed_out = False
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=root,
            env=env,
            start_new_session=True,
            preexec_fn=None if prlimit is not None else functools.partial(_apply_limits, limits),
        )
        readers = asyncio.gather(
            _drain(proc.stdout, limits.max_output_bytes), _drain(proc.stderr, limits.max_output_bytes)
        )
        try:
            out, err = await asyncio.wait_for(asyncio.shield(readers), timeout=limits.timeout_s)
            await proc.wait()
        except (TimeoutError, asyncio.CancelledError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            _kill_group(proc.pid)
            await proc.wait()
            out, err = await readers
            if not timed_out:
                raise
        finally:
            _kill_group(proc.pid)  # anything the program left behind in its group
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    duration = time.perf_counter() - started
    rc = proc.returncode if proc.returncode is not None else -9
    stderr = err.decode("utf-8", "replace")
    reason: str | None = None
    if timed_out:
        reason = "time limit"
    elif rc == -signal.SIGXCPU:
        reason = "cpu limit"
    elif rc != 0 and "MemoryError" in stderr:
        reason = "memory limit"
    elif rc < 0:
        reason = f"signal {-rc}"
    return SandboxResult(
        returncode=rc,
        stdout=out.decode("utf-8", "replace"),
        stderr=stderr,
        duration_s=duration,
        timed_out=timed_out,
        killed_reason=reason,
        network_namespace=use_netns,
        as_nobody=as_nobody,
    )
