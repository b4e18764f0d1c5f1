"""`thrifty keys`: the same keys as the admin API, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from thrifty.cli import main


def _config(tmp_path: Path) -> str:
    path = tmp_path / "thrifty.yaml"
    path.write_text(f"""
store: sqlite:///{tmp_path}/ledger.db
models:
  - {{name: gpt-test, provider: openai, model: gpt-4o-mini, base_url: "http://127.0.0.1:9/v1"}}
""")
    return str(path)


def test_create_list_show_rotate_revoke(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run = CliRunner().invoke
    made = run(main, ["keys", "create", "ops-bot", "--config", config, "--team", "ops", "--model", "gpt-test",
                      "--budget", "10/day", "--budget", "$200/month", "--rpm", "60", "--tag", "feature=ops"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert key["key"].startswith("tk-") and [b["window"] for b in key["budgets"]] == ["day", "month"]
    assert key["limits"] == {"rpm": 60} and key["tags"] == {"feature": "ops"}
    listed = run(main, ["keys", "list", "--config", config])
    assert "ops-bot" in listed.output and key["key"] not in listed.output and "$10/day" in listed.output
    shown = json.loads(run(main, ["keys", "show", "ops-bot", "--config", config]).output)
    assert shown["id"] == key["id"] and "key" not in shown
    rotated = run(main, ["keys", "rotate", key["id"], "--config", config])
    assert json.loads(rotated.stdout)["key"] != key["key"]
    revoked = json.loads(run(main, ["keys", "revoke", "ops-bot", "--config", config]).output)
    assert revoked["status"] == "revoked"
    assert "ops-bot" not in run(main, ["keys", "list", "--config", config]).output
    team = run(main, ["keys", "team", "ops", "--config", config, "--budget", "500/month", "--concurrency", "8"])
    assert team.exit_code == 0 and json.loads(team.output)["limits"] == {"concurrency": 8}


def test_nonsense_is_refused_naming_the_field(tmp_path: Path) -> None:
    config = _config(tmp_path)
    run = CliRunner().invoke
    cases = {
        ("--budget", "-5/day"): "budgets",
        ("--budget", "5/0d"): "budgets",
        ("--budget", "5"): "budgets",
        ("--rpm", "0"): "limits.rpm",
        ("--model", "gpt-9"): "models[0]",
        ("--expires", "yesterday"): "expires",
    }
    for args, field in cases.items():
        out = run(main, ["keys", "create", "bad", "--config", config, *args])
        assert out.exit_code != 0 and field in out.output, (args, out.output)
