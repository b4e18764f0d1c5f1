"""What thrifty costs in throughput and latency, side by side in one run on loopback.

Targets, all against a mock upstream at fixed concurrency:
  (a) direct to the mock,
  (b) a bare aiohttp + uvloop relay written here (the floor for a Python proxy),
  (c) thrifty with the ledger on,
  (d) LiteLLM's proxy in front of the same mock (with --litellm VENV).

Load comes from `wrk` (Debian package) with a Lua script that POSTs one chat request.
Prints requests/s, p50/p99 latency, thrifty's ratio to the relay and to LiteLLM, the median
latency thrifty adds over direct, and checks that the ledger holds a row per request.

    python benchmarks/gateway_overhead.py                 # a, b, c
    python benchmarks/gateway_overhead.py --litellm /tmp/litellm-venv   # and d
    python benchmarks/gateway_overhead.py --baseline-src /tmp/old/src   # and thrifty from
        another source tree (e.g. `git worktree add /tmp/old <commit>`), to compare versions
        in one interleaved run
    python benchmarks/gateway_overhead.py --durability 0,10,50,null     # and thrifty per ledger.durability_ms
    python benchmarks/gateway_overhead.py --spend     # and e: thrifty with a virtual key, its
        # budgets (day + month), its team's budget, a tag budget and rpm/tpm/concurrency limits,
        # whose paced median against (c), in the same interleaved rounds, is the admission cost
    (make that venv with: python -m venv /tmp/litellm-venv &&
     /tmp/litellm-venv/bin/pip install 'litellm[proxy]')
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "Say hello in one short sentence."}], "temperature": 0.7}
ANSWER = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, nice to meet you."},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22},
}


# -- roles run in subprocesses ---------------------------------------------------------------

def run_mock(port: int) -> None:
    import uvloop
    from aiohttp import web

    payload = json.dumps(ANSWER).encode()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    uvloop.run(_serve(app, port))


def run_relay(port: int, upstream: str) -> None:
    import aiohttp
    import uvloop
    from aiohttp import web

    async def main() -> None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            async with session.post(upstream + "/v1/chat/completions", data=body,
                                    headers={"Content-Type": "application/json"}) as resp:
                data = await resp.read()
                return web.Response(body=data, status=resp.status, content_type="application/json")

        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        await _serve(app, port)

    uvloop.run(main())


def run_paced(url: str, connections: int, rate: float, seconds: float, headers: dict[str, str]) -> None:
    """Send `rate` requests/s from `connections` workers and print each latency (ms) as JSON.

    Unlike wrk's closed loop, which keeps every connection busy so that latency only mirrors
    throughput, a paced load shows the time a request spends in the proxy itself."""
    import aiohttp
    import uvloop

    async def main() -> None:
        body = json.dumps(BODY).encode()
        lat: list[float] = []
        interval = connections / rate
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def worker(offset: float) -> None:
                await asyncio.sleep(offset)
                end = time.perf_counter() + seconds
                nxt = time.perf_counter()
                while nxt < end:
                    t0 = time.perf_counter()
                    async with session.post(url, data=body, headers={"Content-Type": "application/json", **headers}) as r:
                        await r.read()
                    lat.append((time.perf_counter() - t0) * 1000)
                    nxt += interval
                    await asyncio.sleep(max(0.0, nxt - time.perf_counter()))

            await asyncio.gather(*(worker(i * interval / connections) for i in range(connections)))
        print(json.dumps(lat))

    uvloop.run(main())


def paced(url: str, connections: int, rate: float, seconds: float, headers: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--role", "pace", "--url", url, "--rate", str(rate),
                          "--connections", str(connections), "--seconds", str(seconds), "--headers", json.dumps(headers or {})],
                         capture_output=True, text=True, check=True).stdout
    lat = sorted(json.loads(out))
    return {"p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)], "n": len(lat)}


async def _serve(app, port: int) -> None:  # type: ignore[no-untyped-def]
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


# -- orchestration --------------------------------------------------------------------------

def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listened on port {port} within {timeout}s")


def wrk(url: str, seconds: int, connections: int, script: Path, headers: dict[str, str] | None = None) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    env = dict(os.environ)
    env["WRK_HEADERS"] = json.dumps(headers or {})
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {p: _ms(re.search(rf"\s{p}%\s+([\d.]+\w+)", out).group(1)) for p in ("50", "99")}  # type: ignore[union-attr]
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "requests": total, "errors": int(non2xx.group(1)) if non2xx else 0}


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[len(ordered) // 2]


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)", text)
    assert m, text
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


LUA = """
wrk.method = "POST"
wrk.body = 'BODY'
wrk.headers["Content-Type"] = "application/json"
local extra = os.getenv("WRK_HEADERS")
for k, v in string.gmatch(extra, '"([^"]+)":%s*"([^"]+)"') do wrk.headers[k] = v end
""".replace("BODY", json.dumps(BODY))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5, help="length of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median round is reported")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--litellm", metavar="VENV", help="a venv with litellm[proxy] installed, to add target (d)")
    parser.add_argument("--baseline-src", metavar="DIR",
                        help="another thrifty source tree (its src/ folder), served as target c0 beside this one")
    parser.add_argument("--rate", type=float, default=400, help="requests/s of the paced latency run")
    parser.add_argument("--durability", default="",
                        help="comma-separated ledger.durability_ms values (null: no journal): one more thrifty each")
    parser.add_argument("--spend", action="store_true", help="add target (e): keys + budgets + rate limits on")
    parser.add_argument("--role", choices=["mock", "relay", "pace"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--headers", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "mock":
        return run_mock(args.port)
    if args.role == "relay":
        return run_relay(args.port, args.upstream)
    if args.role == "pace":
        return run_paced(args.url, args.connections, args.rate, args.seconds, json.loads(args.headers))
    if not shutil.which("wrk"):
        sys.exit("this benchmark needs wrk: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="thrifty-bench-"))
    script = tmp / "post.lua"
    script.write_text(LUA)
    procs: list[subprocess.Popen[bytes]] = []
    me = [sys.executable, __file__]
    try:
        mock_port, relay_port, thrifty_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([*me, "--role", "mock", "--port", str(mock_port)]))
        wait_port(mock_port)
        mock_url = f"http://127.0.0.1:{mock_port}"
        procs.append(subprocess.Popen([*me, "--role", "relay", "--port", str(relay_port), "--upstream", mock_url]))
        config = tmp / "thrifty.yaml"
        config.write_text(f"""
store: sqlite:///{tmp}/ledger.db
models:
  - name: bench-model
    provider: openai
    model: gpt-4o-mini
    base_url: {mock_url}/v1
    price: {{input: 0.15, output: 0.60}}
""")
        procs.append(subprocess.Popen([sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config),
                                       "--port", str(thrifty_port), "--log-level", "warning"]))
        targets = {
            "a. direct to mock": f"{mock_url}/v1/chat/completions",
            "b. bare aiohttp+uvloop relay": f"http://127.0.0.1:{relay_port}/v1/chat/completions",
            "c. thrifty (ledger on)": f"http://127.0.0.1:{thrifty_port}/v1/chat/completions",
        }
        variants: dict[str, str] = {}
        #: thrifty processes by target, for the CPU each spends per request (robust to a busy machine)
        pids: dict[str, int] = {"c. thrifty (ledger on)": procs[-1].pid}
        cpu: dict[str, float] = dict.fromkeys(pids, 0.0)
        served: dict[str, int] = dict.fromkeys(pids, 0)
        for value in [v.strip() for v in args.durability.split(",") if v.strip()]:
            port = free_port()
            vconf = tmp / f"thrifty-durability-{value}.yaml"
            vconf.write_text(config.read_text().replace(f"{tmp}/ledger.db", f"{tmp}/ledger-{value}.db")
                             + f"ledger: {{durability_ms: {value}}}\n")
            procs.append(subprocess.Popen([sys.executable, "-m", "thrifty.cli", "serve", "--config", str(vconf),
                                           "--port", str(port), "--log-level", "warning"]))
            name = f"e. thrifty durability_ms={value}"
            variants[name] = value
            pids[name] = procs[-1].pid
            cpu[name], served[name] = 0.0, 0
            targets[name] = f"http://127.0.0.1:{port}/v1/chat/completions"
        if args.baseline_src:
            base_port = free_port()
            base_config = tmp / "baseline.yaml"
            base_config.write_text(config.read_text().replace(f"{tmp}/ledger.db", f"{tmp}/baseline.db"))
            env = {**os.environ, "PYTHONPATH": os.path.abspath(args.baseline_src)}
            procs.append(subprocess.Popen([sys.executable, "-m", "thrifty.cli", "serve", "--config", str(base_config),
                                           "--port", str(base_port), "--log-level", "warning"], env=env))
            targets["c0. thrifty @ baseline src"] = f"http://127.0.0.1:{base_port}/v1/chat/completions"
            pids["c0. thrifty @ baseline src"] = procs[-1].pid
            cpu["c0. thrifty @ baseline src"], served["c0. thrifty @ baseline src"] = 0.0, 0
        headers: dict[str, dict[str, str]] = {}
        if args.litellm:
            litellm_port = free_port()
            lconf = tmp / "litellm.yaml"
            lconf.write_text(f"""
model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {mock_url}/v1
      api_key: sk-bench
""")
            env = {**os.environ, "LITELLM_MASTER_KEY": "sk-litellm-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            procs.append(subprocess.Popen([f"{args.litellm}/bin/litellm", "--config", str(lconf), "--port", str(litellm_port),
                                           "--num_workers", "1"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            targets["d. LiteLLM proxy"] = f"http://127.0.0.1:{litellm_port}/v1/chat/completions"
            headers["d. LiteLLM proxy"] = {"Authorization": "Bearer sk-litellm-bench"}
        if args.spend:
            name, url, key = _spend_target(tmp, mock_url, procs)
            targets[name] = url
            headers[name] = {"Authorization": f"Bearer {key}"}
        for url in targets.values():
            wait_port(int(url.split(":")[2].split("/")[0]), timeout=180)
        for name, url in targets.items():
            wrk(url, 2, args.connections, script, headers.get(name))  # warm up
        # Interleave the targets over several rounds and keep each one's median round, so that
        # noise from other work on the machine falls on every target alike.
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for r in range(args.rounds):
            for name, url in targets.items():
                print(f"round {r + 1}/{args.rounds}: {name} for {args.seconds}s ...", file=sys.stderr, flush=True)
                before = _cpu_seconds(pids[name]) if name in pids else 0.0
                runs[name].append(wrk(url, args.seconds, args.connections, script, headers.get(name)))
                if name in pids:
                    cpu[name] += _cpu_seconds(pids[name]) - before
                    served[name] += int(runs[name][-1]["requests"])
        results = {name: _median_run(rs) for name, rs in runs.items()}
        pace_runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for r in range(args.rounds):
            for name, url in targets.items():
                print(f"round {r + 1}/{args.rounds}: {name} paced at {args.rate:.0f} req/s ...", file=sys.stderr, flush=True)
                pace_runs[name].append(paced(url, args.connections, args.rate, args.seconds, headers.get(name)))
        pace = {name: sorted(rs, key=lambda x: x["p50"])[len(rs) // 2] for name, rs in pace_runs.items()}
        measured = sum(int(r["requests"]) for r in runs["c. thrifty (ledger on)"])
        time.sleep(1.0)  # let the ledger's last batch land
        # every request thrifty answered (warm-up included) must be in its ledger
        ledger_rows = sqlite3.connect(tmp / "ledger.db").execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    print(f"\ngateway overhead: {args.connections} concurrent connections, median of {args.rounds} interleaved "
          f"{args.seconds}s rounds per target, loopback, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"{'target':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
    for name, r in results.items():
        print(f"{name:34} {r['rps']:9.0f} {r['p50']:8.2f} {r['p99']:8.2f} {int(r['errors']):8d}")
    relay = results["b. bare aiohttp+uvloop relay"]
    thr = results["c. thrifty (ledger on)"]
    direct = results["a. direct to mock"]
    print(f"\nthrifty / bare relay throughput: {thr['rps'] / relay['rps']:.2f}  (target >= 0.50)")
    if "c0. thrifty @ baseline src" in results:
        base = results["c0. thrifty @ baseline src"]
        print(f"baseline thrifty / bare relay:   {base['rps'] / relay['rps']:.2f}")
        print(f"thrifty / baseline thrifty:      {thr['rps'] / base['rps']:.2f}  (target >= 1.0 within noise)")
    if "d. LiteLLM proxy" in results:
        print(f"thrifty / LiteLLM throughput:    {thr['rps'] / results['d. LiteLLM proxy']['rps']:.1f}x (target >= 20x)")
    print(f"median latency thrifty adds over direct, saturated (wrk): {thr['p50'] - direct['p50']:.2f} ms")
    print(f"\npaced load: {args.connections} connections, {args.rate:.0f} req/s in all (each connection waits its turn)")
    print(f"{'target':34} {'p50 ms':>8} {'p99 ms':>8} {'requests':>9}")
    for name, r in pace.items():
        print(f"{name:34} {r['p50']:8.2f} {r['p99']:8.2f} {int(r['n']):9d}")
    added = pace["c. thrifty (ledger on)"]["p50"] - pace["a. direct to mock"]["p50"]
    relay_added = pace["b. bare aiohttp+uvloop relay"]["p50"] - pace["a. direct to mock"]["p50"]
    print(f"median latency thrifty adds over direct, paced: {added:.2f} ms (target <= 1 ms; the bare relay adds {relay_added:.2f} ms)")
    print(f"ledger rows: {ledger_rows} (wrk counted {measured} in the measured rounds, plus the warm-up)")
    if variants:
        base = next((n for n, v in variants.items() if v == "null"), "c. thrifty (ledger on)")
        print(f"\nledger.durability_ms: cost against {base} (same run, interleaved rounds)")
        print(f"{'durability_ms':14} {'req/s':>9} {'throughput':>11} {'paced p50 ms':>13} {'paced p99 ms':>13} "
              f"{'CPU us/request':>15} {'vs base':>8}")
        base_cpu = cpu[base] / max(served[base], 1) * 1e6
        for name, value in variants.items():
            r, p = results[name], pace[name]
            per = cpu[name] / max(served[name], 1) * 1e6
            print(f"{value:14} {r['rps']:9.0f} {r['rps'] / results[base]['rps']:10.2f}x {p['p50']:13.2f} {p['p99']:13.2f} "
                  f"{per:15.0f} {per / base_cpu:7.2f}x")
        print("(CPU us/request: thrifty's own CPU time, all threads, over the saturated rounds; the least noisy column)")
    if SPEND in pace:
        cost = pace[SPEND]["p50"] - pace["c. thrifty (ledger on)"]["p50"]
        print(f"admission cost (keys + budgets + rate limits on vs off), paced median: {cost:.3f} ms (target <= 0.3 ms); "
              f"saturated throughput {results[SPEND]['rps'] / thr['rps']:.2f} of (c); non-2xx {int(results[SPEND]['errors'])}")


SPEND = "e. thrifty + key, budgets, limits"


def _spend_target(tmp: Path, mock_url: str, procs: list[subprocess.Popen[bytes]]) -> tuple[str, str, str]:
    """A second thrifty whose requests carry a virtual key with 5 budgets and 4 limits in all."""
    config = tmp / "thrifty-spend.yaml"
    config.write_text(f"""
store: sqlite:///{tmp}/ledger-spend.db
models:
  - name: bench-model
    provider: openai
    model: gpt-4o-mini
    base_url: {mock_url}/v1
    price: {{input: 0.15, output: 0.60}}
spend:
  tags:
    "feature=bench": [{{usd: 100000, window: day}}]
""")
    cli = [sys.executable, "-m", "thrifty.cli", "keys"]
    subprocess.run([*cli, "team", "bench", "--config", str(config), "--budget", "100000/day", "--rpm", "100000000"],
                   check=True, capture_output=True)
    made = subprocess.run([*cli, "create", "bench-key", "--config", str(config), "--team", "bench", "--tag", "feature=bench",
                           "--budget", "100000/day", "--budget", "1000000/month", "--rpm", "100000000",
                           "--tpm", "10000000000", "--concurrency", "100000"], check=True, capture_output=True, text=True)
    key = json.loads(made.stdout)["key"]
    port = free_port()
    procs.append(subprocess.Popen([sys.executable, "-m", "thrifty.cli", "serve", "--config", str(config),
                                   "--port", str(port), "--log-level", "warning"]))
    return SPEND, f"http://127.0.0.1:{port}/v1/chat/completions", key


if __name__ == "__main__":
    main()
