#!/usr/bin/env python
"""Screenshot a page (a file path or a URL) with headless Chromium, through Selenium.

Used for the README's picture of the audit report:
    python scripts/make_demo_log.py --out /tmp/demo.jsonl
    thrifty audit /tmp/demo.jsonl --html /tmp/report.html
    python scripts/screenshot.py /tmp/report.html docs/audit-report.png
Needs Debian's `chromium` and `chromium-driver` (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
)  # fmt: skip


def driver(width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("page")
    ap.add_argument("out")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=0, help="0: the page's full height")
    args = ap.parse_args()
    url = args.page if "://" in args.page else Path(args.page).resolve().as_uri()
    d = driver(args.width, args.height or 1000)
    try:
        d.get(url)
        time.sleep(1.0)
        if not args.height:
            h = d.execute_script("return document.documentElement.scrollHeight")
            d.set_window_size(args.width, int(h) + 20)
            time.sleep(0.5)
        d.save_screenshot(args.out)
    finally:
        d.quit()
    print(f"saved {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
