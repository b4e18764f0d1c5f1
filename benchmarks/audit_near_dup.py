#!/usr/bin/env python
"""Does `thrifty audit` flag near-duplicates the way the semantic cache would serve them?

Builds logs from ../shared/data (`thrifty.audit.cases`) and audits each:
- 300 distinct GSM8K questions behind the same five solved examples, + 60 exact repeats;
- 300 distinct MMLU questions behind the same long instruction template, + 60 exact repeats;
- 300 distinct GSM8K questions behind the same template, + 60 exact repeats;
- GPTCache's 999 paraphrase pairs (each first question, then each second one).
Prints, for each, the exact repeats counted, the questions flagged as near-duplicates (the
target for the first three: at most 5%), and for the paraphrases the share of second
questions found. The old audit (first 1,000 characters, cosine >= 0.92) flagged 299 of 300.

Usage: python benchmarks/audit_near_dup.py [--pairs N] [--examples]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from thrifty.audit.cases import (  # noqa: E402
    few_shot_case,
    find_shared_data,
    gptcache_pairs,  # noqa: E402
    paraphrase_case,
    template_case,
)
from thrifty.audit.sources import LogSource  # noqa: E402
from thrifty.audit.waste import Analyzer, AuditSettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=999, help="paraphrase pairs to send (default all 999)")
    ap.add_argument("--examples", action="store_true", help="print the accepted and refused examples")
    args = ap.parse_args()
    data = find_shared_data(Path(__file__))
    if data is None:
        raise SystemExit("../shared/data is not here")
    cases = {
        "GSM8K behind 5 solved examples": few_shot_case(data),
        "MMLU behind an instruction template": template_case(data, "mmlu"),
        "GSM8K behind an instruction template": template_case(data, "gsm8k"),
        f"GPTCache paraphrase pairs ({args.pairs})": paraphrase_case(data, args.pairs),
    }
    print(f"{'case':<42} {'lines':>6} {'exact':>6} {'distinct':>8} {'pairs checked':>13} {'flagged':>8} {'share':>7} {'s':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, lines in cases.items():
            path = Path(tmp) / "log.jsonl"
            path.write_bytes(b"".join(lines))
            t = time.perf_counter()
            source = LogSource(str(path))
            analyzer = Analyzer(AuditSettings(near_dup_sample=4000))
            analyzer.run(source)
            a = analyzer.finish(str(path), source.format, source.bad)
            near = a.waste["near_duplicates"]
            share = near["matches"] / near["sampled"] if near["sampled"] else 0.0
            print(
                f"{name:<42} {a.rows:>6,} {a.waste['exact_duplicates']['requests']:>6,} {near['sampled']:>8,} "
                f"{near['candidates']:>13,} {near['matches']:>8,} {share:>7.1%} {time.perf_counter() - t:>6.1f}"
            )
            if "paraphrase" in name:
                # Row k asks origin k, row n + k its paraphrase (rows are numbered from 1).
                pairs = gptcache_pairs(data)[: args.pairs]
                n = len(pairs)
                partner = {later: earlier for earlier, later in analyzer.near_pairs}
                seconds = [k for k, (o, p) in enumerate(pairs) if o != p]
                found = [k for k in seconds if n + k + 1 in partner]
                own = [k for k in found if partner[n + k + 1] <= n and pairs[partner[n + k + 1] - 1][0] == pairs[k][0]]
                firsts = sum(1 for later in partner if later <= n)
                print(f"  paraphrases found: {len(found):,} of {len(seconds):,} ({len(found) / len(seconds):.1%}); "
                      f"matched to their own origin: {len(own):,}; first questions matched to another first "
                      f"question: {firsts:,}; refused by: {near['refused_by']}")  # fmt: skip
            if args.examples:
                for kind in ("accepted_examples", "refused_examples"):
                    for e in near[kind][:3]:
                        print(f"  {kind.split('_')[0]} ({e['reason']}, cos {e['cosine']:.3f}, p {e['score']:.3f}): "
                              f"{e['compared_a'][:80]!r} | {e['compared_b'][:80]!r}")  # fmt: skip


if __name__ == "__main__":
    main()
