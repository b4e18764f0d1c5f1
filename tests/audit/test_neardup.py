"""Near-duplicates as the semantic cache would decide them, on logs rebuilt from public data.

Questions behind the same few-shot block or instruction template are not near-duplicates of
each other (the old audit, comparing the first 1,000 characters, flagged 299 of 300); exact
repeats are still counted exactly; real paraphrase pairs are still found.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from thrifty.audit.cases import (
    few_shot_case,
    find_shared_data,
    gptcache_pairs,
    paraphrase_case,
    template_case,
)
from thrifty.audit.pricing import RateBook
from thrifty.audit.run import audit_log
from thrifty.audit.sources import LogSource
from thrifty.audit.waste import Analyzer, Audit, AuditSettings


@pytest.fixture(scope="module")
def data() -> Path:
    found = find_shared_data(Path(__file__))
    if found is None:
        pytest.skip("the shared data (../shared/data) is not here")
    return found


def _audit(tmp_path: Path, lines: list[bytes], name: str) -> Audit:
    log = tmp_path / f"{name}.jsonl"
    log.write_bytes(b"".join(lines))
    return audit_log(str(log), settings=AuditSettings(), rates=RateBook(), progress=False)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(lambda d: few_shot_case(d), id="gsm8k-behind-five-solved-examples"),
        pytest.param(lambda d: template_case(d, "mmlu"), id="mmlu-behind-an-instruction-template"),
    ],
)
def test_questions_behind_a_shared_block_are_not_near_duplicates(
    tmp_path: Path, data: Path, case: Callable[[Path], list[bytes]]
) -> None:
    a = _audit(tmp_path, case(data), "case")
    assert a.rows == 360
    assert a.waste["exact_duplicates"]["requests"] == 60
    near = a.waste["near_duplicates"]
    assert near["status"] == "ok" and near["sampled"] == 300
    assert near["template_stripped"] == 300  # the shared block was set aside before embedding
    assert near["matches"] <= 15, near["accepted_examples"]  # at most 5% flagged
    # What was compared is the question, not the block in front of it.
    for e in near["refused_examples"]:
        assert "Student's question" not in e["compared_b"] and "Answer: " not in e["compared_b"]
    # The headline holds only what was counted or verified: the exact repeats here.
    levers = {lv.lever: lv for lv in a.levers}
    assert levers["cache"].basis == "measured" and levers["semantic_cache"].basis == "verified"
    assert a.saving_total == pytest.approx(levers["cache"].saving + levers["semantic_cache"].saving)


def test_paraphrase_pairs_are_still_found(tmp_path: Path, data: Path) -> None:
    pairs = gptcache_pairs(data)[:300]
    log = tmp_path / "paraphrases.jsonl"
    log.write_bytes(b"".join(paraphrase_case(data, 300)))
    source = LogSource(str(log))
    analyzer = Analyzer(AuditSettings(), RateBook())
    analyzer.run(source)
    a = analyzer.finish(str(log), source.format, source.bad)
    near = a.waste["near_duplicates"]
    assert near["status"] == "ok"
    assert near["sampled"] + a.waste["exact_duplicates"]["requests"] == 600
    # Row k asks origin k, row 300 + k its paraphrase: found when matched to its own origin.
    partner = dict((later, earlier) for earlier, later in analyzer.near_pairs)
    own = sum(
        1 for k in range(300)
        if (e := partner.get(301 + k)) is not None and e <= 300 and pairs[e - 1][0] == pairs[k][0]
    )  # fmt: skip
    assert own >= 0.55 * 300, own  # all 999 pairs: 80.9% found, 64.8% matched to their own origin
    assert near["accepted_examples"] and near["refused_examples"]
    for e in near["accepted_examples"]:
        assert e["a"] != e["b"] and e["reason"] in ("model", "same text")
