"""Context compression on RAG prompts: tokens saved versus evidence kept, single- and multi-hop.

SQuAD v2 (single hop): each prompt is one paragraph that holds the answer plus 9 distractor
paragraphs from the same article, shuffled with a fixed seed, then the question (answerable
questions only). HotpotQA (multi-hop, `benchmarks/data/`): each prompt is 10 titled
paragraphs, two of which are needed, then the question; see `multihop_prompts`. Its
settings were chosen on the HotpotQA dev split; the figures are for the test split.
At each budget (a share of the context's tokens) the extractive compressor is compared
with its single-pass scorer (`SINGLE_PASS`: the selection before multi-hop awareness), on
HotpotQA also with its earlier sentence-level second hop (`SENTENCE_HOPS`), and two
baselines that spend the same budget: random sentences, and the first sentences.

- reduction: 1 - compressed prompt tokens / original prompt tokens (whole user message,
  question included), averaged over prompts;
- retention: share of prompts whose compressed context still contains a gold answer text;
- span kept: stricter, the gold answer's own occurrence (its answer_start in the answer
  paragraph) is inside a kept sentence.

HotpotQA figures (on the test split unless `--multihop-split dev`):
- reduction: as above;
- facts kept: share of prompts where every supporting-fact sentence (HotpotQA's annotation,
  from both needed paragraphs) is still in the compressed context, verbatim;
- both hops: at least one supporting sentence of each of the two needed paragraphs kept;
- answer: the gold answer text is still in the context (yes/no questions count as kept).

Run:  PYTHONPATH=src python benchmarks/compression.py [--limit N] [--plot out.png]
      [--multihop-split dev|test|all] [--multihop-only] [--multihop-data FILE]

`--multihop-data FILE` scores another file of HotpotQA examples the same way (HotpotQA's own
JSON such as the first 100 questions of hotpot_dev_distractor_v1.json, JSON lines, or .xz;
see benchmarks/hotpotqa.py): a held-out check is one command, with no setting changed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thrifty.compress.context import ContextSettings, compress_parts
from thrifty.compress.extract import join, select
from thrifty.compress.sentences import split_sentences
from thrifty.embed import Embedder, shared_embedder
from thrifty.evals.stats import mean_ci, paired_delta
from thrifty.ledger.tokens import count_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hotpotqa import load_examples  # noqa: E402  (benchmarks/ is not a package)

RELATIVE = Path("shared/data/compression/squad_v2_dev_subset.json")
MULTIHOP_DATA = Path(__file__).resolve().parent / "data" / "hotpotqa_multihop.json.xz"


def default_data() -> Path:
    """`../shared/data/...` from the project root, looked for in each parent directory."""
    for parent in Path(__file__).resolve().parents[1:]:
        candidate = parent / RELATIVE
        if candidate.exists():
            return candidate
    return Path(__file__).resolve().parents[2] / RELATIVE


BUDGETS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
#: Feature ablations of the extractive scorer (weights overridden), shown beside the full one.
ABLATIONS = {
    "lexical only": {"embedding": 0.0, "passage": 0.0},
    "embed only": {"lexical": 0.0, "passage": 0.0, "neighbour": 0.0},
}
#: The scorer as it was before multi-hop awareness: one pass, no paragraph structure, no anchors.
SINGLE_PASS = {"hop": 0.0, "anchor": 0.0, "paragraph": 0.0, "title": 0.0, "passage_lexical": 0.0}
#: The multi-hop scorer before the paragraph chain: its second hop re-scores sentences only.
SENTENCE_HOPS = {"chain": 0.0}
MULTIHOP_BUDGETS = (0.2, 0.3, 0.35, 0.38, 0.4, 0.5)
HEADER = "Answer the question using the context.\n\nContext:\n"


@dataclass
class Prompt:
    text: str
    question: str
    context: str
    answers: list[str]
    #: character spans of the gold answers inside `context`
    spans: list[tuple[int, int]]


def build_prompts(path: Path, seed: int = 13, limit: int | None = None) -> list[Prompt]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    rng = random.Random(seed)
    prompts: list[Prompt] = []
    for article in data:
        paragraphs = [p["context"] for p in article["paragraphs"]]
        for pi, para in enumerate(article["paragraphs"]):
            for qa in para["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                others = [i for i in range(len(paragraphs)) if i != pi]
                chosen = [pi, *rng.sample(others, min(9, len(others)))]
                rng.shuffle(chosen)
                context = HEADER
                spans: list[tuple[int, int]] = []
                for i in chosen:
                    if i == pi:
                        offset = len(context)
                        spans = [
                            (offset + a["answer_start"], offset + a["answer_start"] + len(a["text"]))
                            for a in qa["answers"]
                        ]
                    context += paragraphs[i] + "\n\n"
                question = "Question: " + qa["question"].strip()
                prompts.append(
                    Prompt(context + question, question, context, [a["text"] for a in qa["answers"]], spans)
                )
    rng.shuffle(prompts)
    return prompts[:limit] if limit else prompts


@dataclass
class MultiHopPrompt:
    text: str
    question: str
    context: str
    answer: str
    #: the supporting sentences, grouped by their paragraph (two groups)
    facts: list[list[str]]
    #: HotpotQA's question type: "bridge" (the second passage is reached through the first) or
    #: "comparison" (the question names both)
    kind: str = ""


#: How retrieved paragraphs are laid out; each prompt uses one, chosen with a fixed seed, so
#: that the figures do not depend on one template (the last one has no title line).
LAYOUTS = (
    "{title}\n{text}",
    "Title: {title}\n{text}",
    "[{n}] {title}\n{text}",
    "Document [{n}](Title: {title}) {text}",
)


def paragraph_text(sentences: list[str]) -> str:
    """HotpotQA's sentences joined back into the paragraph they were cut from."""
    out = ""
    for s in sentences:
        out += s if not out or s[:1].isspace() else " " + s
    return out.strip()


def multihop_prompts(
    path: Path = MULTIHOP_DATA, split: str = "test", seed: int = 13, header: str = HEADER
) -> list[MultiHopPrompt]:
    """HotpotQA questions with their 10 paragraphs, as RAG prompts (`split`: dev, test or all;
    a file whose examples have no split is all held out, so every example counts), after
    `header` (an instruction, then "Context:", by default)."""
    examples, _ = load_examples(path)
    rng = random.Random(seed)
    prompts = []
    for ex in examples:
        layout = rng.choice(LAYOUTS)
        if split != "all" and ex.get("split", split) != split:
            continue
        by_title = {t: s for t, s in ex["context"]}
        blocks = [
            layout.format(n=n, title=t, text=paragraph_text(s)) for n, (t, s) in enumerate(ex["context"], 1)
        ]
        context = header + "\n\n".join(blocks) + "\n\n"
        groups: dict[str, list[str]] = {}
        for title, i in ex["supporting_facts"]:
            groups.setdefault(title, []).append(by_title[title][i].strip())
        question = "Question: " + ex["question"].strip()
        prompts.append(
            MultiHopPrompt(
                context + question, question, context, ex["answer"], list(groups.values()), ex.get("type", "")
            )
        )
    return prompts


def score_multihop(p: MultiHopPrompt, compressed_text: str) -> tuple[float, bool, bool, bool]:
    """(reduction, every supporting sentence kept, one of each paragraph kept, answer kept)."""
    before = count_text(p.text)
    after = count_text(compressed_text)
    body = compressed_text[: compressed_text.rfind(p.question)]
    kept = [[f in body for f in group] for group in p.facts]
    answer = p.answer.lower() in ("yes", "no") or p.answer in body
    return 1 - after / before, all(all(g) for g in kept), all(any(g) for g in kept), answer


def kept_ranges(context: str, compressed: str) -> list[tuple[int, int]]:
    """Spans of `context` that survive in `compressed` (sentences are kept verbatim, in order)."""
    out = []
    pos = 0
    for s in split_sentences(context):
        found = compressed.find(s.text, pos)
        if found >= 0:
            out.append((s.start, s.end))
            pos = found + len(s.text)
    return out


def score(p: Prompt, compressed_text: str) -> tuple[float, bool, bool]:
    """(reduction, answer text present, gold span kept) for one compressed prompt."""
    before = count_text(p.text)
    after = count_text(compressed_text)
    body = compressed_text[: compressed_text.rfind(p.question)]
    present = any(a in body for a in p.answers)
    ranges = kept_ranges(p.context, body)
    span_kept = any(any(a <= s and e <= b for a, b in ranges) for s, e in p.spans)
    return 1 - after / before, present, span_kept


def baseline(p: Prompt | MultiHopPrompt, ratio: float, how: str, rng: random.Random) -> str:
    sentences = split_sentences(p.context)
    budget = int(count_text(p.context) * ratio)
    if how == "random":
        scores = np.array([rng.random() for _ in sentences], dtype=np.float32)
    else:
        scores = -np.arange(len(sentences), dtype=np.float32)
    kept = select(sentences, scores, budget)
    return join(p.context, sentences, kept).rstrip() + "\n\n" + p.question


def squad(
    prompts: list[Prompt], embedder: Embedder, ablation: bool, mean_tokens: float, plot: Path | None
) -> None:
    print(
        f"{len(prompts)} answerable SQuAD v2 questions, 10 paragraphs each, mean prompt {mean_tokens:.0f} tokens"
    )
    # Prompts outside, budgets inside: each prompt's sentences are embedded once (LRU cache).
    names = ["extractive", "single pass", *(ABLATIONS if ablation else {}), "random", "first"]
    stats: dict[tuple[float, str], list[tuple[float, bool, bool]]] = {
        (r, m): [] for r in BUDGETS for m in names
    }
    rngs = {ratio: random.Random(7) for ratio in BUDGETS}
    for p in prompts:
        for ratio in BUDGETS:
            variants = {"extractive": {}, "single pass": SINGLE_PASS, **(ABLATIONS if ablation else {})}
            for name, w in variants.items():
                outcome = compress_parts(
                    [p.text], ContextSettings(enabled=True, ratio=ratio, min_tokens=0, weights=w), embedder
                )
                stats[ratio, name].append(score(p, outcome.texts[0] if outcome.texts else p.text))
            stats[ratio, "random"].append(score(p, baseline(p, ratio, "random", rngs[ratio])))
            stats[ratio, "first"].append(score(p, baseline(p, ratio, "first", rngs[ratio])))
    rows = []
    for (ratio, method), values in stats.items():
        arr = np.array(values, dtype=np.float64)
        rows.append((ratio, method, arr[:, 0].mean(), arr[:, 1].mean(), arr[:, 2].mean()))

    print(f"\n{'budget':>7} {'method':<13} {'reduction':>9} {'retention':>9} {'span kept':>9}")
    for ratio, method, red, ret, span in rows:
        print(f"{ratio:>7.2f} {method:<13} {red:>9.1%} {ret:>9.1%} {span:>9.1%}")
    best = [r for r in rows if r[1] == "extractive" and r[2] >= 0.60 and r[3] >= 0.95]
    verdict = "met" if best else "not met"
    print(f"\nSQuAD target (>= 60% fewer tokens with >= 95% retention): {verdict}", end="")
    if best:
        b = max(best, key=lambda r: r[2])
        print(f" at budget {b[0]:.2f}: {b[2]:.1%} fewer tokens, {b[3]:.1%} retention")
    else:
        print()
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for method in dict.fromkeys(r[1] for r in rows):
            pts = [(r[2], r[3]) for r in rows if r[1] == method]
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=method)
        ax.axvline(0.6, color="grey", lw=0.5)
        ax.axhline(0.95, color="grey", lw=0.5)
        ax.set_xlabel("input-token reduction")
        ax.set_ylabel("answer retention")
        ax.set_title("Context compression, SQuAD v2 (10 paragraphs)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        print(f"plot written to {plot}")


def multihop(split: str, embedder: Embedder, header: str = HEADER, path: Path = MULTIHOP_DATA) -> None:
    prompts = multihop_prompts(path, split=split, header=header)
    if not prompts:
        raise SystemExit(f"{path}: no usable HotpotQA example (10 paragraphs, two of them supporting)")
    mean_tokens = sum(count_text(p.text) for p in prompts) / len(prompts)
    label = f"{split} split"
    if path != MULTIHOP_DATA:
        label = f"{path.name}, {load_examples(path)[1]} rows left out as unusable"
    print(
        f"\n{len(prompts)} HotpotQA questions ({label}), 10 paragraphs each, two needed, "
        f"mean prompt {mean_tokens:.0f} tokens"
    )
    names = ["extractive", "sentence hops", "single pass", "random", "first"]
    stats: dict[tuple[float, str], list[tuple[float, bool, bool, bool]]] = {
        (r, m): [] for r in MULTIHOP_BUDGETS for m in names
    }
    rngs = {ratio: random.Random(7) for ratio in MULTIHOP_BUDGETS}
    for p in prompts:
        for ratio in MULTIHOP_BUDGETS:
            for name, w in (("extractive", {}), ("sentence hops", SENTENCE_HOPS), ("single pass", SINGLE_PASS)):
                settings = ContextSettings(enabled=True, ratio=ratio, min_tokens=0, weights=w)
                outcome = compress_parts([p.text], settings, embedder)
                stats[ratio, name].append(score_multihop(p, outcome.texts[0] if outcome.texts else p.text))
            stats[ratio, "random"].append(score_multihop(p, baseline(p, ratio, "random", rngs[ratio])))
            stats[ratio, "first"].append(score_multihop(p, baseline(p, ratio, "first", rngs[ratio])))
    rows = []
    for (ratio, method), values in stats.items():
        arr = np.array(values, dtype=np.float64)
        rows.append((ratio, method, *arr.mean(axis=0).tolist()))
    print(
        f"\n{'budget':>7} {'method':<13} {'reduction':>9} {'facts kept':>10} {'both hops':>9} {'answer':>7}"
    )
    for ratio, method, red, facts, hops, answer in rows:
        print(f"{ratio:>7.2f} {method:<13} {red:>9.1%} {facts:>10.1%} {hops:>9.1%} {answer:>7.1%}")
    best = [r for r in rows if r[1] == "extractive" and r[2] >= 0.60 and r[3] >= 0.95]
    print(
        f"\nmulti-hop target (>= 60% fewer tokens, every supporting sentence kept in >= 95%, {label}): ",
        end="",
    )
    if best:
        b = max(best, key=lambda r: r[2])
        print(f"met at budget {b[0]:.2f}: {b[2]:.1%} fewer tokens, {b[3]:.1%} of prompts keep every fact")
    else:
        at60 = [r for r in rows if r[1] == "extractive" and r[2] >= 0.60]
        b = max(at60, key=lambda r: r[3]) if at60 else rows[0]
        print(
            f"not met; best at >= 60% fewer tokens: budget {b[0]:.2f}, {b[2]:.1%} fewer, {b[3]:.1%} keep every fact"
        )
    # How far one split of ~150 questions can be trusted: a bootstrap interval on that row,
    # the paired gain over the earlier scorer, and the question types apart.
    kept = [float(v[1]) for v in stats[b[0], "extractive"]]
    ci = mean_ci(kept)
    gain = paired_delta([float(v[1]) for v in stats[b[0], "sentence hops"]], kept).delta
    kinds = [p.kind for p in prompts]
    by_kind = ", ".join(
        f"{k} {np.mean([x for x, t in zip(kept, kinds, strict=True) if t == k]):.1%} of {kinds.count(k)}"
        for k in sorted(set(kinds))
    )
    print(
        f"  budget {b[0]:.2f}: facts kept {ci.mean:.1%} (95% CI {ci.low:.1%}-{ci.high:.1%}, bootstrap over "
        f"{ci.n} questions); over sentence hops {gain.mean:+.1%} ({gain.low:+.1%} to {gain.high:+.1%}); {by_kind}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument(
        "--limit", type=int, default=None, help="only the first N prompts (after a seeded shuffle)"
    )
    ap.add_argument(
        "--ablation", action="store_true", help="also score with single features (lexical, embedding)"
    )
    ap.add_argument("--plot", type=Path, default=None, help="write a PNG of retention against reduction")
    ap.add_argument(
        "--multihop-split", choices=("dev", "test", "all"), default="test", help="HotpotQA part to report"
    )
    ap.add_argument("--multihop-only", action="store_true", help="skip the SQuAD table")
    ap.add_argument(
        "--multihop-data",
        type=Path,
        default=MULTIHOP_DATA,
        help="HotpotQA examples to score instead of the committed file: HotpotQA's own JSON (e.g. "
        "hotpot_dev_distractor_v1.json, or its first 100 questions), JSON lines, .xz; examples without "
        "a split all count",
    )
    ap.add_argument(
        "--header",
        default=HEADER.replace("\n", "\\n"),
        help=r"what precedes the HotpotQA paragraphs (\n for a line break; '' for nothing), to check "
        "that the figures do not hang on one prompt layout",
    )
    args = ap.parse_args()

    embedder = shared_embedder()
    prompts = build_prompts((args.data or default_data()).resolve(), limit=args.limit)
    mean_tokens = sum(count_text(p.text) for p in prompts) / len(prompts)
    t0 = time.perf_counter()
    if not args.multihop_only:
        squad(prompts, embedder, args.ablation, mean_tokens, args.plot)
    multihop(args.multihop_split, embedder, args.header.replace("\\n", "\n"), args.multihop_data)
    elapsed = time.perf_counter() - t0
    # Latency with no embedding cache (every sentence embedded anew), one thread.
    cold_embedder = Embedder(threads=1, cache_size=1)
    cold_embedder.embed(["warm up"])
    for label, weights in (("extractive", {}), ("lexical only", ABLATIONS["lexical only"])):
        cold_settings = ContextSettings(enabled=True, ratio=0.2, min_tokens=0, weights=weights)
        cold = []
        for p in prompts[:50]:
            t = time.perf_counter()
            compress_parts([p.text], cold_settings, cold_embedder)
            cold.append(time.perf_counter() - t)
        lat = np.array(cold) * 1000
        print(
            f"{label}: time per prompt (~{mean_tokens:.0f} tokens, no embedding cache, 1 thread): "
            f"median {np.median(lat):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms"
        )
    print(f"benchmark total {elapsed:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
