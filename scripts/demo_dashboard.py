#!/usr/bin/env python
"""Fill a live thrifty with demo traffic and screenshot its /dashboard (for the README).

Starts the mock upstream (thrifty.testing.mock_upstream) and a thrifty server in front of
it with the exact cache and dedup levers on, sends the requests of a demo log
(scripts/make_demo_log.py) through the real HTTP API with their route, feature and task,
posts the tasks' outcomes, then opens /dashboard in headless Chromium. Answers come from
the mock, so token counts are the mock's; prices are those configured below.

Usage: python scripts/demo_dashboard.py demo.jsonl docs/dashboard.png [--requests 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from thrifty.config import parse_config  # noqa: E402
from thrifty.gateway import Gateway  # noqa: E402
from thrifty.server.app import create_app  # noqa: E402
from thrifty.testing.mock_upstream import MockUpstream  # noqa: E402

PRICES = {  # USD per 1M tokens when RouterBench was recorded
    "gpt-4-1106-preview": (10, 30), "gpt-3.5-turbo-1106": (1, 2), "claude-2.0": (8, 24),
    "claude-instant-1.2": (0.8, 2.4), "mixtral-8x7b-instruct": (0.6, 0.6),
}  # fmt: skip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(log: Path, out: Path, limit: int) -> None:
    mock = await MockUpstream().start()
    tmp = Path(tempfile.mkdtemp(prefix="thrifty-demo-"))
    models = "\n".join(
        f"  - {{name: {m}, provider: openai, base_url: '{mock.base_url}/v1', price: {{input: {i}, output: {o}}}}}"
        for m, (i, o) in PRICES.items()
    )
    config = parse_config(f"""
store: sqlite:///{tmp}/ledger.db
ledger: {{flush_interval: 0.1}}
cache: {{enabled: true}}
dashboard: {{refresh_s: 5, window: 1h}}
models:
{models}
""")
    gateway = Gateway(config)
    runner = web.AppRunner(create_app(gateway), access_log=None)
    await runner.setup()
    port = _port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    outcomes: list[dict[str, object]] = []
    sem = asyncio.Semaphore(8)
    async with aiohttp.ClientSession() as s:

        async def send(rec: dict[str, object]) -> None:
            tags = rec.get("tags") or {}
            assert isinstance(tags, dict)
            headers = {"X-Thrifty-Tags": f"route={tags.get('route', 'default')},feature={tags.get('feature', 'none')}"}
            if tags.get("task"):
                headers["X-Thrifty-Task"] = str(tags["task"])
            body = rec["request"]
            if rec.get("status"):  # a call that failed in the log fails here too
                body = {**body, "messages": [{"role": "user", "content": "[500 always]"}]}  # type: ignore[dict-item]
            async with sem, s.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                await r.read()

        batch = []
        with log.open() as f:
            for n, line in enumerate(f):
                if n >= limit:
                    break
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if "request" in rec:
                    batch.append(send(rec))
                elif "task" in rec:
                    outcomes.append(rec)
        await asyncio.gather(*batch)
        for o in outcomes:
            async with s.post(url + "/v1/thrifty/feedback", json={"task": o["task"], "success": o["success"]}) as r:
                await r.read()
    assert gateway.ledger is not None
    gateway.ledger.flush()
    from screenshot import driver  # scripts/screenshot.py

    d = await asyncio.to_thread(driver, 1400, 1560)
    try:
        await asyncio.to_thread(d.get, url + "/dashboard")
        await asyncio.sleep(3)
        await asyncio.to_thread(d.save_screenshot, str(out))
    finally:
        d.quit()
    await runner.cleanup()
    await mock.stop()
    print(f"saved {out} ({len(batch)} requests, {len(outcomes)} task outcomes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--requests", type=int, default=1500, help="lines of the log to send")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    asyncio.run(run(Path(args.log), Path(args.out), args.requests))


if __name__ == "__main__":
    main()
