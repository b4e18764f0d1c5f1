"""Fault drills: thrifty under load while its ledger's PostgreSQL and its cache's Redis are stopped,
paused and killed, plus a thousand half-sent requests and an absurd usage report.

Every server it breaks is its own: a private PostgreSQL cluster and a private Redis on free
ports (thrifty.testing.services), never a shared one. thrifty runs as `thrifty serve` in a
subprocess (so that it can be killed with SIGKILL), in front of the mock upstream. Load is
open-loop at `--rate` requests/s: 60% plain and 40% streamed OpenAI requests at temperature 0;
40% repeat a pool of 100 prompts (exact-cache hits), and every 50th request is a burst of four
identical requests that the upstream answers in 40 ms (dedup), the rest are unique.

Targets (issue 14), each printed with its figure:
  pg_stop       PostgreSQL stopped 20 s: 0 failed requests; every row in PostgreSQL within 10 s
                of its return, without a restart; /readyz degraded during, ready after.
  pg_kill9      PostgreSQL blip, then kill -9 of thrifty, then a restart: rows lost <= the
                durability bound x rate, 0 rows older than the bound.
  redis_pause   Redis paused 15 s: p99 <= 200 ms during and after; no request waits on a
                lock after Redis resumes (none sent after it takes > 1 s).
  redis_stop    Redis stopped 20 s: <= 20 log lines during the outage.
  slowloris     1,000 connections that send half a request: all closed within the header
                timeout (+ the time it took to open them, + 0.2 s); a legitimate request
                meanwhile answers 200.
  usage         an upstream reporting 1e30 tokens: the row is flagged and priced from an estimate.
  replica_kill9 (with --replicas 2) kill -9 of one replica under load: the balancer sends its traffic
                to the other, 0 failed after the kill; rows lost <= the durability bound x rate.

With `--replicas 2` (issue 16) the store drills run against two replicas sharing the stores
(Redis drills: a shared private PostgreSQL for the ledger), the load spread over both; a
request whose replica refuses the connection goes to the other, as a load balancer does.

    python benchmarks/faults.py            # the full drills (about 4 minutes)
    python benchmarks/faults.py --short    # shorter outages, 200 connections (about 1.5 minutes)
    python benchmarks/faults.py --only pg_stop,usage
    python benchmarks/faults.py --replicas 2 --only pg_stop,pg_kill9,redis_pause,redis_stop,replica_kill9

Latencies carry the noise of whatever else runs on the machine; the counts (failed requests,
lost rows, log lines, closed connections) do not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from thrifty.testing.mock_upstream import MockUpstream
from thrifty.testing.services import PrivatePostgres, PrivateRedis, free_port

RESULTS: list[tuple[str, str, str, bool]] = []


def report(drill: str, figure: str, target: str, met: bool) -> None:
    RESULTS.append((drill, figure, target, met))
    print(f"  [{'met' if met else 'MISSED'}] {drill}: {figure} (target: {target})", flush=True)


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# -- thrifty in a subprocess -------------------------------------------------------------------


class Thrifty:
    def __init__(self, workdir: Path, config: str, server: str = "", index: int = 0) -> None:
        self.port = free_port()
        self.dir = workdir
        suffix = f"-{index}" if index else ""
        self.path = workdir / f"thrifty{suffix}.yaml"
        self.path.write_text(f"server: {{host: 127.0.0.1, port: {self.port}{server}}}\n" + config)
        self.log = workdir / f"thrifty{suffix}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Thrifty:
        out = self.log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "thrifty.cli", "serve", "--config", str(self.path),
                                      "--log-level", "info"], stdout=out, stderr=out, cwd=self.dir)
        deadline = time.monotonic() + 120
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(f"thrifty exited: {self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.2)
        raise TimeoutError("thrifty did not start")

    def log_lines(self) -> int:
        return len(self.log.read_bytes().splitlines()) if self.log.exists() else 0

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Fleet:
    """`n` replicas of one config (each its own port, log and spool subdirectory), as behind a
    load balancer."""

    def __init__(self, workdir: Path, config: str, n: int) -> None:
        self.members = [Thrifty(workdir, config, index=i) for i in range(n)]

    async def start(self) -> Fleet:
        await asyncio.gather(*(m.start() for m in self.members))
        return self

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    def log_lines(self) -> int:
        return sum(m.log_lines() for m in self.members)

    def log_text(self) -> list[str]:
        return [line for m in self.members if m.log.exists() for line in m.log.read_text().splitlines()]

    def stop(self) -> None:
        for m in self.members:
            m.stop()


def models(mock: MockUpstream) -> str:
    return f"""
models:
  - {{name: gpt-mock, provider: openai, model: gpt-4o-mini, base_url: "{mock.base_url}/v1",
     price: {{input: 0.15, output: 0.60}}, retry_backoff: 0.01}}
"""


# -- load -------------------------------------------------------------------------------------


@dataclass
class Result:
    sent: float  # seconds since the load started
    latency: float
    status: int
    request_id: str | None
    done: float  # time.monotonic() at the answer's end
    replica: int = 0  # which replica answered


@dataclass
class Load:
    """Open-loop load spread round-robin over `urls`. Like a load balancer, a request whose
    replica refuses the connection or resets it before any answer goes to the next one (a
    request cut mid-answer is not retried: it may have been billed)."""

    urls: list[str]
    rate: float
    tag: str
    results: list[Result] = field(default_factory=list)
    t0: float = 0.0
    n: int = 0
    #: Requests the balancer moved to another replica after a refusal or a reset.
    moved: int = 0

    async def run(self, seconds: float) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            self.t0 = time.monotonic()
            tasks: list[asyncio.Task[None]] = []
            i = 0
            while True:
                now = time.monotonic()
                if now - self.t0 >= seconds:
                    break
                if i % 50 == 0:  # a burst of identical requests: dedup
                    prompt, n = f"burst {self.tag} {i} [slow 40]", 4
                elif i % 10 < 4:
                    prompt, n = f"repeat {i % 100}", 1
                else:
                    prompt, n = f"unique {self.tag} {i}", 1
                for _ in range(n):
                    tasks.append(asyncio.create_task(self.one(http, prompt, stream=i % 5 in (1, 3))))
                    self.n += 1
                i += 1
                await asyncio.sleep(max(0.0, self.t0 + i / self.rate - time.monotonic()))
            await asyncio.gather(*tasks)

    async def one(self, http: aiohttp.ClientSession, prompt: str, stream: bool) -> None:
        body: dict[str, Any] = {"model": "gpt-mock", "temperature": 0, "messages": [{"role": "user", "content": prompt}]}
        if stream:
            body["stream"] = True
        start = time.monotonic()
        status, rid = 0, None
        first = self.n % len(self.urls)
        replica = first
        for attempt in range(len(self.urls)):
            replica = (first + attempt) % len(self.urls)
            try:
                async with http.post(self.urls[replica] + "/v1/chat/completions", json=body) as r:
                    data = await r.read()
                    status, rid = r.status, r.headers.get("X-Thrifty-Request-Id")
                    if stream and b"[DONE]" not in data:
                        status = 599  # the stream did not end normally
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                # refused, or reset before any answer (a killed replica's pooled connection):
                # the balancer tries the next replica (Envoy's connect-failure and reset retries)
                status = 0
                self.moved += 1
                continue
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            break
        end = time.monotonic()
        self.results.append(Result(start - self.t0, end - start, status, rid, end, replica))

    def completed(self) -> list[Result]:
        return [r for r in self.results if r.status == 200 and r.request_id]

    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status != 200]


async def poll_ready(url: str, stop: asyncio.Event, into: list[tuple[float, str]]) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while not stop.is_set():
            try:
                async with http.get(url + "/readyz") as r:
                    into.append((time.monotonic(), (await r.json())["status"]))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                into.append((time.monotonic(), "no answer"))
            await asyncio.sleep(0.5)


def pg_ids(url: str, ids: list[str]) -> set[str]:
    import psycopg

    with psycopg.connect(url, connect_timeout=3) as conn:
        rows = conn.execute("SELECT request_id FROM requests WHERE request_id = ANY(%s)", (ids,)).fetchall()
    return {r[0] for r in rows}


# -- the drills --------------------------------------------------------------------------------


async def pg_stop(args: argparse.Namespace, mock: MockUpstream, work: Path) -> None:
    out, pre, post = (4.0, 3.0, 8.0) if args.short else (20.0, 5.0, 15.0)
    pg = await asyncio.to_thread(lambda: PrivatePostgres().start())
    th = await Fleet(work, f"store: {pg.url}\nledger: {{spool_dir: '{work}/spool'}}\n"
                     "cache: {store: memory}\ndedup: {enabled: true}\n" + models(mock), args.replicas).start()
    try:
        load = Load(th.urls, args.rate, "pg")
        polls: list[tuple[float, str]] = []
        stop_polls = asyncio.Event()
        pollers = [asyncio.create_task(poll_ready(url, stop_polls, polls)) for url in th.urls]
        running = asyncio.create_task(load.run(pre + out + post))
        await asyncio.sleep(pre)
        await asyncio.to_thread(pg.stop)
        t_stop = time.monotonic()
        await asyncio.sleep(out)
        await asyncio.to_thread(pg.start)
        t_back = time.monotonic()
        # every row answered before the return must reach PostgreSQL: how long after it?
        backlog = [r.request_id for r in load.completed() if r.done < t_back and r.request_id]
        caught_up = None
        while time.monotonic() - t_back < 30:
            missing = set(backlog) - await asyncio.to_thread(pg_ids, pg.url, backlog)
            if not missing:
                caught_up = time.monotonic() - t_back
                break
            await asyncio.sleep(0.5)
        await running
        await asyncio.sleep(2.0)
        stop_polls.set()
        await asyncio.gather(*pollers)
        done = load.completed()
        have = await asyncio.to_thread(pg_ids, pg.url, [r.request_id for r in done if r.request_id])
        during = [s for t, s in polls if t_stop + 1 < t < t_back]
        after = [s for t, s in polls if t > t_back + (caught_up or 30) + 1]
        failed = len(load.failed())
        report("pg_stop", f"{failed} failed of {len(load.results)} requests", "0", failed == 0)
        report("pg_stop", f"backlog of {len(backlog)} rows in PostgreSQL "
               f"{f'{caught_up:.1f} s' if caught_up is not None else 'not within 30 s'} after it came back",
               "<= 10 s, no restart", caught_up is not None and caught_up <= 10)
        report("pg_stop", f"rows in PostgreSQL at the end: {len(have)} of {len(done)} answered", "all",
               len(have) == len(done))
        report("pg_stop", f"/readyz during: {during.count('degraded')}/{len(during)} degraded; "
               f"after: {after.count('ready')}/{len(after)} ready", "degraded during, ready after",
               bool(during) and all(s == "degraded" for s in during) and bool(after) and all(s == "ready" for s in after))
    finally:
        th.stop()
        await asyncio.to_thread(pg.close)


async def pg_kill9(args: argparse.Namespace, mock: MockUpstream, work: Path) -> None:
    out, pre = (3.0, 3.0) if args.short else (7.0, 5.0)
    pg = await asyncio.to_thread(lambda: PrivatePostgres().start())
    config = (f"store: {pg.url}\nledger: {{spool_dir: '{work}/spool'}}\n"
              "cache: {store: memory}\ndedup: {enabled: true}\n" + models(mock))
    th = await Fleet(work, config, args.replicas).start()
    durability = args.durability_ms
    try:
        load = Load(th.urls, args.rate, "kill")
        running = asyncio.create_task(load.run(pre + out + 4.0))
        await asyncio.sleep(pre)
        await asyncio.to_thread(pg.stop)
        await asyncio.sleep(out)
        await asyncio.to_thread(pg.start)
        await asyncio.sleep(1.0)  # the spool is being replayed: kill now
        t_kill = time.monotonic()
        th.members[0].kill9()  # with several replicas the others go on serving
        await running
        await th.members[0].start()  # the same config and spool directory
        done = load.completed()
        ids = [r.request_id for r in done if r.request_id]
        deadline = time.monotonic() + 30
        have: set[str] = set()
        while time.monotonic() < deadline:
            have = await asyncio.to_thread(pg_ids, pg.url, ids)
            if len(have) == len(ids):
                break
            await asyncio.sleep(0.5)
        th.stop()
        lost = [r for r in done if r.request_id not in have]
        bound_s = durability / 1000
        old = [r for r in lost if r.done < t_kill - bound_s - 0.05]
        allowed = int(args.rate * 1.4 * bound_s) + 1  # a burst makes 1.4 rows a request on average
        report("pg_kill9", f"{len(lost)} of {len(done)} answered rows lost (kill -9 1 s after a {out:.0f} s "
               f"PostgreSQL outage)", f"<= {durability:g} ms x rate = {allowed}", len(lost) <= allowed)
        report("pg_kill9", f"{len(old)} lost rows older than the bound", "0", not old)
        if args.replicas > 1:
            after = [r for r in load.results if r.done > t_kill + 0.5]
            bad = [r for r in after if r.status != 200]
            report("pg_kill9", f"{len(bad)} of {len(after)} requests sent after the kill failed (the other "
                   f"replica{'s' if args.replicas > 2 else ''} carried them)", "0", not bad)
    finally:
        th.stop()
        await asyncio.to_thread(pg.close)


async def redis_pause(args: argparse.Namespace, mock: MockUpstream, work: Path) -> None:
    out, pre, post = (4.0, 3.0, 4.0) if args.short else (15.0, 5.0, 10.0)
    redis = PrivateRedis().start()
    store, pg = await ledger_store(args, work)
    th = await Fleet(work, f"store: {store}\ncache: {{store: '{redis.url}'}}\ndedup: {{redis: '{redis.url}'}}\n"
                     + models(mock), args.replicas).start()
    try:
        load = Load(th.urls, args.rate, "pause")
        running = asyncio.create_task(load.run(pre + out + post))
        await asyncio.sleep(pre)
        redis.pause()
        t_pause = time.monotonic() - load.t0
        await asyncio.sleep(out)
        redis.resume()
        t_resume = time.monotonic() - load.t0
        await running
        before = [r.latency * 1000 for r in load.results if 1.0 <= r.sent < t_pause]  # past the cold start
        during = [r.latency * 1000 for r in load.results if t_pause <= r.sent < t_resume]
        after = [r.latency * 1000 for r in load.results if r.sent >= t_resume]
        failed = len(load.failed())
        slow_after = [x for x in after if x > 1000]
        report("redis_pause", f"p99 during the pause {pct(during, 99):.0f} ms (max {max(during, default=0):.0f}), "
               f"after {pct(after, 99):.0f} ms (max {max(after, default=0):.0f}); with Redis healthy before it "
               f"{pct(before, 99):.0f} ms; load average {os.getloadavg()[0]:.1f}", "p99 <= 200 ms",
               pct(during, 99) <= 200 and pct(after, 99) <= 200)
        report("redis_pause", f"{len(slow_after)} requests sent after the resume took > 1 s; {failed} failed",
               "0 wait on a lock; 0 failed", not slow_after and failed == 0)
    finally:
        th.stop()
        redis.close()
        if pg is not None:
            await asyncio.to_thread(pg.close)


async def redis_stop(args: argparse.Namespace, mock: MockUpstream, work: Path) -> None:
    out, pre, post = (4.0, 3.0, 3.0) if args.short else (20.0, 5.0, 5.0)
    redis = PrivateRedis().start()
    store, pg = await ledger_store(args, work)
    th = await Fleet(work, f"store: {store}\ncache: {{store: '{redis.url}'}}\ndedup: {{redis: '{redis.url}'}}\n"
                     + models(mock), args.replicas).start()
    try:
        load = Load(th.urls, args.rate, "stop")
        running = asyncio.create_task(load.run(pre + out + post))
        await asyncio.sleep(pre)
        before = len(th.log_text())
        redis.stop()
        await asyncio.sleep(out)
        text = th.log_text()[before:]
        redis.start()
        await running
        failed = len(load.failed())
        lines, limit = len(text), 20 * args.replicas
        report("redis_stop", f"{lines} log lines during the {out:.0f} s outage at {args.rate:.0f} req/s over "
               f"{args.replicas} replica(s), {failed} failed requests", f"<= {limit} lines, 0 failed",
               lines <= limit and failed == 0)
        for line in text[:6]:
            print(f"      | {line[:160]}")
    finally:
        th.stop()
        redis.close()
        if pg is not None:
            await asyncio.to_thread(pg.close)


async def ledger_store(args: argparse.Namespace, work: Path) -> tuple[str, PrivatePostgres | None]:
    """One replica keeps its ledger in SQLite; several share a (private) PostgreSQL."""
    if args.replicas == 1:
        return f"sqlite:///{work}/ledger.db", None
    pg = await asyncio.to_thread(lambda: PrivatePostgres().start())
    return pg.url, pg


async def replica_kill9(args: argparse.Namespace, mock: MockUpstream, work: Path) -> None:
    """kill -9 one replica of several sharing PostgreSQL and Redis; the balancer moves its
    traffic to the others; a successor starts on its spool directory a few seconds later."""
    if args.replicas < 2:
        print("  (needs --replicas 2 or more; skipped)")
        return
    pre, gap, post = (3.0, 2.0, 3.0) if args.short else (5.0, 5.0, 5.0)
    pg = await asyncio.to_thread(lambda: PrivatePostgres().start())
    redis = PrivateRedis().start()
    config = (f"store: {pg.url}\nredis: {redis.url}\nledger: {{spool_dir: '{work}/spool'}}\n"
              "dedup: {enabled: true}\n" + models(mock))
    th = await Fleet(work, config, args.replicas).start()
    try:
        load = Load(th.urls, args.rate, "replica")
        running = asyncio.create_task(load.run(pre + gap + post))
        await asyncio.sleep(pre)
        t_kill = time.monotonic()
        th.members[0].kill9()
        await asyncio.sleep(gap)
        t_back = time.monotonic()
        await th.members[0].start()  # a successor: the same config, it takes over the spool directory
        await running
        done = load.completed()
        ids = [r.request_id for r in done if r.request_id]
        have: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            have = await asyncio.to_thread(pg_ids, pg.url, ids)
            if len(have) == len(ids):
                break
            await asyncio.sleep(0.5)
        in_flight = [r for r in load.results if r.status != 200 and r.sent + load.t0 <= t_kill]
        later = [r for r in load.results if r.sent + load.t0 > t_kill]
        failed_later = [r for r in later if r.status != 200]
        carried = sum(1 for r in load.results if t_kill < r.sent + load.t0 < t_back and r.status == 200)
        lost = [r for r in done if r.request_id not in have]
        bound_s = args.durability_ms / 1000
        allowed = int(args.rate * 1.4 * bound_s) + 1
        report("replica_kill9", f"{len(failed_later)} of {len(later)} requests sent after the kill failed; "
               f"{carried} answered by the other replica{'s' if args.replicas > 2 else ''} while it was down",
               "0 failed", not failed_later)
        report("replica_kill9", f"{len(in_flight)} requests in flight on the killed replica cut; {load.moved} moved "
               "to the other by the balancer after a refusal or reset", "reported", True)
        report("replica_kill9", f"{len(lost)} of {len(done)} answered rows lost", f"<= {allowed} "
               f"({args.durability_ms:g} ms x rate)", len(lost) <= allowed)
    finally:
        th.stop()
        redis.close()
        await asyncio.to_thread(pg.close)


async def slowloris(args: argparse.Namespace, mock: MockUpstream, work: Path) -> None:
    n = 200 if args.short else 1000
    header_timeout = 2.0 if args.short else 10.0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n * 2 + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n * 2 + 200)), hard))
    th = await Thrifty(work, f"store: sqlite:///{work}/ledger.db\n" + models(mock),
                       server=f", header_timeout: {header_timeout}").start()
    try:
        conns = []
        opened = time.monotonic()
        for i in range(n):
            reader, writer = await asyncio.open_connection("127.0.0.1", th.port)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty" if i % 2 else b"")
            conns.append((reader, writer))
        conns_opened = time.monotonic()
        async with aiohttp.ClientSession() as http:
            t = time.monotonic()
            async with http.post(th.url + "/v1/chat/completions",
                                 json={"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}]}) as r:
                legit, legit_ms = r.status, (time.monotonic() - t) * 1000

        async def closed_at(reader: asyncio.StreamReader) -> float:
            try:
                async with asyncio.timeout(header_timeout * 3 + 5):
                    while await reader.read(4096):
                        pass
            except (TimeoutError, ConnectionError):
                return float("inf")
            return time.monotonic() - opened

        times = await asyncio.gather(*(closed_at(r) for r, _ in conns))
        for _, w in conns:
            w.close()
        # the connections took `spread` seconds to open; 0.2 s of scheduling slack on a busy machine
        spread = conns_opened - opened
        limit = header_timeout + spread + 0.2
        worst = max(times)
        report("slowloris", f"{sum(1 for x in times if x != float('inf'))}/{n} half-request connections closed, "
               f"the last {worst:.1f} s after the first opened ({spread:.1f} s to open them all; header timeout "
               f"{header_timeout:g} s)", f"all within {limit:.1f} s", worst <= limit)
        report("slowloris", f"a legitimate request meanwhile: {legit} in {legit_ms:.0f} ms", "200", legit == 200)
    finally:
        th.stop()


async def usage(args: argparse.Namespace, mock: MockUpstream, work: Path) -> None:
    async def absurd(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({
            "id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there, friend"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1e30, "completion_tokens": 5, "total_tokens": 1e30}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", absurd)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    th = await Thrifty(work, f"store: sqlite:///{work}/ledger.db\nledger: {{flush_interval: 0.05}}\nmodels:\n"
                       f"  - {{name: gpt-mock, provider: openai, model: gpt-4o-mini, base_url: 'http://127.0.0.1:{port}/v1',"
                       " price: {input: 0.15, output: 0.60}}\n").start()
    try:
        ask = {"model": "gpt-mock", "messages": [{"role": "user", "content": "say hello to my friend"}]}
        async with aiohttp.ClientSession() as http, http.post(th.url + "/v1/chat/completions", json=ask) as r:
            status, rid = r.status, r.headers.get("X-Thrifty-Request-Id")
        th.stop()  # a clean stop writes every row
        row = sqlite3.connect(work / "ledger.db").execute(
            "SELECT input_tokens, output_tokens, usage_estimated, cost_usd, extra FROM requests WHERE request_id = ?",
            (rid,)).fetchone()
        tin, tout, estimated, cost, extra = row
        flag = json.loads(extra).get("usage_implausible")
        report("usage", f"answer {status}; row flagged: {bool(flag)}, usage_estimated: {bool(estimated)}, "
               f"{tin} + {tout} tokens, cost ${cost:.8f} (as reported it would be $150.00, clamped to 10^9 tokens)",
               "flagged, priced from the estimate", bool(flag) and bool(estimated) and cost < 0.001)
    finally:
        th.stop()
        await runner.cleanup()


DRILLS = {"pg_stop": pg_stop, "pg_kill9": pg_kill9, "redis_pause": redis_pause, "redis_stop": redis_stop,
          "replica_kill9": replica_kill9, "slowloris": slowloris, "usage": usage}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="shorter outages and fewer connections")
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s of the load (default 100)")
    parser.add_argument("--only", default="", help="comma-separated drills: " + ",".join(DRILLS))
    parser.add_argument("--replicas", type=int, default=1,
                        help="run the store drills against this many replicas sharing the stores (2: scale-out)")
    parser.add_argument("--durability-ms", type=float, default=10.0,
                        help="the ledger.durability_ms thrifty runs with (its default), for the kill -9 bound")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(DRILLS)
    if not (PrivatePostgres.available() and PrivateRedis.available()):
        sys.exit("needs PostgreSQL binaries (initdb, pg_ctl) and redis-server")
    mock = await MockUpstream().start()
    try:
        for name in names:
            print(f"\n== {name}", flush=True)
            with tempfile.TemporaryDirectory(prefix=f"thrifty-faults-{name}-") as tmp:
                os.chmod(tmp, 0o755)
                await DRILLS[name](args, mock, Path(tmp))
    finally:
        await mock.stop()
    print("\nfault drills (issues 14, 16): " + ("short" if args.short else "full") + f" run at {args.rate:.0f} req/s, "
          f"{args.replicas} replica(s)")
    print(f"{'drill':12} {'met':7} figure  [target]")
    for drill, figure, target, met in RESULTS:
        print(f"{drill:12} {'met' if met else 'MISSED':7} {figure}  [{target}]")
    return 0 if all(m for *_, m in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
