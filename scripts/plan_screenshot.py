#!/usr/bin/env python
"""Screenshot the dashboard's Plan page (for the README) with its default sliders.

Starts a thrifty server in process (no provider is called: the page only plans), opens
/dashboard/plan in headless Chromium, waits for the first plan to be drawn and saves the page.

Usage: python scripts/plan_screenshot.py docs/plan.png
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from screenshot import driver  # noqa: E402

from thrifty.config import parse_config  # noqa: E402
from thrifty.gateway import Gateway  # noqa: E402
from thrifty.server.app import create_app  # noqa: E402


def _shoot(url: str, out: str, width: int) -> None:
    d = driver(width, 1000)
    try:
        d.get(url)
        deadline = time.monotonic() + 30
        while d.execute_script("return document.body.dataset.ready") != "1":
            if time.monotonic() > deadline:
                raise TimeoutError("the Plan page did not draw within 30 s")
            time.sleep(0.2)
        time.sleep(0.3)
        d.set_window_size(width, int(d.execute_script("return document.documentElement.scrollHeight")) + 20)
        time.sleep(0.5)
        d.save_screenshot(out)
    finally:
        d.quit()


async def main(out: str, width: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gateway = Gateway(parse_config(f"store: sqlite:///{tmp}/ledger.db\n"))
        runner = web.AppRunner(create_app(gateway))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            await asyncio.to_thread(_shoot, f"http://127.0.0.1:{port}/dashboard/plan", out, width)
        finally:
            await runner.cleanup()
    print(f"saved {out}", file=sys.stderr)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--width", type=int, default=1400)
    args = ap.parse_args()
    asyncio.run(main(args.out, args.width))
