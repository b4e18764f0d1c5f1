"""`thrifty audit` end to end: terminal summary, JSON, and an HTML report that works offline."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from thrifty.audit.cli import audit
from thrifty.audit.synth import write as write_synthetic

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    d = tmp_path_factory.mktemp("report")
    log = d / "log.jsonl"
    write_synthetic(str(log), 2000, seed=3, bad_every=400)
    html, js = d / "report.html", d / "audit.json"
    result = CliRunner().invoke(
        audit, [str(log), "--html", str(html), "--json", str(js), "--near-dup-sample", "0", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    return html, js, result.output


def test_terminal_summary_lists_bad_lines_and_levers(report: tuple[Path, Path, str]) -> None:
    _, js, out = report
    assert "5 bad lines skipped (lines 4" in out  # lines 400, 800, ... of the base records, shifted by retries
    for heading in ("Cost by model", "Top cost drivers", "Waste", "What each lever would save", "How each was obtained",
                    "Measured and verified saving", "Assumed, not in that total"):  # fmt: skip
        assert heading in out
    flat = " ".join(out.split())  # rich wraps long lines
    assert "to measure it: `thrifty audit LOG --measure N --config candidate.yaml --judge MODEL`" in flat
    data = json.loads(js.read_text())
    assert data["bad_lines"] == 5 and len(data["bad_examples"]) == 5
    assert data["rows"] > 2000 and data["total_cost"] > 0
    assert {lv["lever"] for lv in data["levers"]} == {"cache", "semantic_cache", "dedup", "prompt_caching", "cap", "route"}
    assert {lv["basis"] for lv in data["levers"]} == {"measured", "verified", "assumed"}


def test_html_report_is_self_contained(report: tuple[Path, Path, str]) -> None:
    html = report[0].read_text()
    assert "Chart.js v4" in html and "Released under the MIT License" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "the report must not load anything remote"
    assert "/*AUDIT_DATA*/" not in html and "const DATA = {" in html


def test_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(audit, [str(tmp_path / "nope.jsonl")])
    assert result.exit_code != 0 and "no such log" in result.output


@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="headless Chromium is not installed: apt-get install -y chromium chromium-driver",
)
def test_html_report_draws_its_charts_offline(report: tuple[Path, Path, str], tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1600"):  # fmt: skip
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        driver.get(report[0].resolve().as_uri())
        counts = driver.execute_script(
            "return Array.from(document.querySelectorAll('canvas')).map((c) => "
            "[c.id, !!Chart.getChart(c), Chart.getChart(c) ? Chart.getChart(c).data.datasets[0].data.length : 0])"
        )
        driver.save_screenshot(str(tmp_path / "report.png"))
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    assert len(counts) == 7
    for chart_id, drawn, points in counts:
        assert drawn and points > 0, chart_id
    assert severe == []
