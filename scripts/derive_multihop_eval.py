"""Derive the committed multi-hop compression eval from two public HotpotQA files.

The benchmark must run offline, so a compact file of HotpotQA examples is committed under
`benchmarks/data/` (see the README there for source, license and the numbers this script
printed). This script is how that file was made; it is kept so that the derivation can be
checked and repeated, not run by the benchmark.

Inputs (HotpotQA's own JSON shape: `_id`, `question`, `answer`, `type`, `supporting_facts`
as `[title, sentence index]` or `[title, [indices], ...]`, `context` as `[title, sentences]`):
- AMOR's `data/hotpotqa/test.json`: 500 HotpotQA dev questions, each with 10 paragraphs
  retrieved from the full Wikipedia (the "fullwiki" setting); only questions where both
  gold paragraphs were retrieved are usable;
- AMOR's `data/hotpotqa/dev.json`: 100 HotpotQA questions with 10 paragraphs, both gold
  paragraphs among them;
- `--exclude`: the first 100 examples of HotpotQA's `hotpot_dev_distractor_v1.json`; any
  question found there is dropped (they are held apart for an independent check).

Run: python scripts/derive_multihop_eval.py AMOR_TEST AMOR_DEV --exclude FIRST100 \
        --out benchmarks/data/hotpotqa_multihop.json.xz
"""

from __future__ import annotations

import argparse
import json
import lzma
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from hotpotqa import read_rows, usable  # noqa: E402  (benchmarks/ is not a package)

#: Share of the examples, per source, that go to the dev split (settings are tuned there).
DEV_SHARE = 0.4
SEED = 21


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("amor_test", type=Path)
    ap.add_argument("amor_dev", type=Path)
    ap.add_argument("--exclude", type=Path, required=True, help="the first 100 dev distractor examples")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    held_apart = {r["question"].strip() for r in read_rows(args.exclude)}
    if len(held_apart) != 100:
        print(f"expected 100 held-apart questions, got {len(held_apart)}", file=sys.stderr)
        return 1
    rng = random.Random(SEED)
    examples: list[dict[str, Any]] = []
    for source, path in (("hotpotqa-dev-fullwiki", args.amor_test), ("hotpotqa-10-paragraphs", args.amor_dev)):
        rows = read_rows(path)
        kept = []
        dropped_held = 0
        for row in rows:
            if row["question"].strip() in held_apart:
                dropped_held += 1
                continue
            ex = usable(row)
            if ex is not None:
                ex["source"] = source
                kept.append(ex)
        rng.shuffle(kept)
        n_dev = round(len(kept) * DEV_SHARE)
        for i, ex in enumerate(kept):
            ex["split"] = "dev" if i < n_dev else "test"
        print(
            f"{source}: {len(rows)} rows, {dropped_held} held apart (first 100 of dev distractor), "
            f"{len(kept)} usable: {n_dev} dev, {len(kept) - n_dev} test"
        )
        examples.extend(kept)
    ids = [e["id"] for e in examples]
    assert len(set(ids)) == len(ids), "an example appears twice"
    payload = json.dumps({"examples": examples}, ensure_ascii=False, separators=(",", ":"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(lzma.compress(payload.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME))
    print(f"wrote {len(examples)} examples to {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
