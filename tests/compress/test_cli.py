"""`thrifty compress`: try one prompt, sweep ratios over a file of prompts, with the real compressor."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from tests.compress.test_multihop import ANSWER, CONTEXT, QUESTION
from thrifty.cli import main

PROMPT = f"Answer the question using the context.\n\nContext:\n{CONTEXT}\n\nQuestion: {QUESTION}"


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["compress", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_try_prints_the_prompt_as_sent_with_the_question_untouched() -> None:
    code, out, err = run("try", "-", "--ratio", "0.5", "--lexical-only", stdin=PROMPT)
    assert code == 0
    assert out.rstrip().endswith(f"Question: {QUESTION}") and ANSWER in out
    assert len(out) < len(PROMPT) * 0.7
    assert "fewer" in err and "->" in err
    # with the embedding model too (the default)
    code, out, err = run("try", "-", "--ratio", "0.5", stdin=PROMPT)
    assert code == 0 and out.rstrip().endswith(f"Question: {QUESTION}") and len(out) < len(PROMPT) * 0.7


def test_try_says_why_a_prompt_is_left_alone() -> None:
    code, out, err = run("try", "-", stdin="Just a short note with no question in it.")
    assert code == 0 and out.strip() == "Just a short note with no question in it."
    assert "left as sent: no question found" in err


def sweep_file(tmp_path: Path) -> Path:
    lines = [
        {"prompt": PROMPT, "keep": [ANSWER]},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}],
         "keep": [ANSWER, "Kiss and Tell is a 1945 American comedy film"]},
        {"prompt": "Too short to compress.\n\nQuestion: why?", "keep": ["Too short"]},
    ]
    path = tmp_path / "rag.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def test_sweep_reports_each_ratio_and_recommends_the_smallest_that_keeps_everything(tmp_path: Path) -> None:
    plot = tmp_path / "sweep.png"
    code, out, _ = run("sweep", str(sweep_file(tmp_path)), "--ratios", "0.05,0.5,1", "--min-tokens", "100",
                       "--target", "1", "--lexical-only", "--plot", str(plot))
    assert code == 0, out
    assert "3 prompts, 4 texts to keep" in out
    # ratio, prompts compressed, fewer tokens, kept all, texts kept
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:5]}
    assert list(table) == ["0.05", "0.50", "1.00"]
    # At 5% of the context the answer does not survive; at half of it, the second hop keeps it.
    assert table["0.05"][2] == "33.3%" and table["0.50"][2] == "100.0%" and table["0.50"][0] == "2"
    assert table["1.00"] == ["0", "0.0%", "100.0%", "100.0%"]  # the whole context: nothing saved
    assert "smallest ratio keeping everything in >= 100% of prompts: 0.5" in out
    assert "ratio: 0.5" in out and plot.stat().st_size > 1000


def test_sweep_says_when_no_ratio_is_enough(tmp_path: Path) -> None:
    code, out, _ = run("sweep", str(sweep_file(tmp_path)), "--ratios", "0.05", "--min-tokens", "100")
    assert code == 0 and "no ratio tried keeps everything in >= 95% of prompts" in out


def test_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "x", "keep": ["a"]}\n{"keep": ["a"]}\n', encoding="utf-8")
    code, out, err = run("sweep", str(path))
    assert code == 2 and 'line 2: needs "prompt"' in err
    path.write_text('{"prompt": "x", "keep": "a"}\n', encoding="utf-8")
    assert 'line 1: "keep" must be a list of strings' in run("sweep", str(path))[2]
    assert "each ratio must be in (0, 1]" in run("sweep", str(sweep_file(tmp_path)), "--ratios", "0,2")[2]


def test_report_is_the_compress_report_command(tmp_path: Path) -> None:
    code, out, _ = run("report", "--store", f"sqlite:///{tmp_path / 'l.db'}")
    assert code == 0 and "cache-hit req" in out
