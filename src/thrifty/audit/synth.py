"""Synthetic OpenAI-format request logs of any length, for scale tests and benchmarks.

Written as a stream (constant memory): prompts drawn from a Zipf-like popularity over a
large pool of distinct questions, so that the log has exact repeats, retries shortly after
a failure, truncated answers, several models, keys and features, and a bad line now and
then. The figures it produces are for measuring the audit's speed and memory, not costs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import orjson

TOPICS = ("invoice", "refund", "password", "shipping", "warranty", "upgrade", "login", "report", "export", "billing")
ACTIONS = ("How do I", "Why can't I", "Can you explain how to", "What is the fastest way to", "Help me")
OBJECTS = ("change my", "cancel the", "download my", "find the", "update the", "share a")
MODELS = (("gpt-4o", 0.5), ("gpt-4o-mini", 0.35), ("claude-3-5-sonnet-20241022", 0.15))
SYSTEM = "You are the support assistant of Example Corp. Answer briefly and cite the help-center article. " * 3


def lines(n: int, seed: int = 0, bad_every: int = 0, distinct: int = 200_000) -> Iterator[bytes]:
    """`n` JSONL lines (bytes, with newline). Every `bad_every`-th line is cut short (0: none)."""
    rng = random.Random(seed)
    models = [m for m, _ in MODELS]
    weights = [w for _, w in MODELS]
    ts = 1_790_000_000.0
    for i in range(1, n + 1):
        ts += rng.expovariate(1 / 0.5)
        # Zipf-like: small ids are far more popular.
        pid = int(distinct ** rng.random()) - 1
        prompt = (
            f"{ACTIONS[pid % 5]} {OBJECTS[(pid // 5) % 6]} {TOPICS[(pid // 30) % 10]} "
            f"number {pid // 300}? (ticket {pid})"
        )
        model = rng.choices(models, weights)[0]
        key = f"key-{pid % 7}"
        fail = rng.random() < 0.02
        truncated = not fail and rng.random() < 0.03
        out_tokens = 64 if truncated else rng.randint(20, 400)
        rec = {
            "timestamp": ts,
            "request": {
                "model": model,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                "temperature": 0,
            },
            "tags": {"route": "support", "feature": TOPICS[pid % 10], "key": key},
            "latency_ms": round(rng.uniform(200, 4000), 1),
        }
        if fail:
            rec["status"] = 429
            rec["response"] = {"error": {"message": "rate limited"}}
        else:
            rec["response"] = {
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "…"},
                             "finish_reason": "length" if truncated else "stop"}],
                "usage": {"prompt_tokens": 120 + len(prompt) // 4, "completion_tokens": out_tokens},
            }  # fmt: skip
        data = orjson.dumps(rec)
        if bad_every and i % bad_every == 0:
            data = data[: len(data) // 2]
        yield data + b"\n"
        if fail:  # the client retries a moment later
            ts += rng.uniform(0.5, 5)
            rec["timestamp"] = ts
            rec.pop("status")
            rec["response"] = {
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "…"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 120 + len(prompt) // 4, "completion_tokens": out_tokens},
            }
            yield orjson.dumps(rec) + b"\n"


def write(path: str, n: int, seed: int = 0, bad_every: int = 0) -> int:
    """Write about `n` lines (retries add ~2%) to `path`; returns the number written."""
    count = 0
    with open(path, "wb") as f:
        for line in lines(n, seed, bad_every):
            f.write(line)
            count += 1
    return count


def chat_line(prompt: str, ts: float, *, model: str = "gpt-4o", system: str | None = None,
              cost: float = 0.001, answer: str = "…") -> bytes:  # fmt: skip
    """One OpenAI-format log line (deterministic request, complete answer) asking `prompt`."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    rec = {
        "timestamp": ts,
        "request": {"model": model, "messages": messages, "temperature": 0},
        "response": {
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": max(1, len(prompt) // 4), "completion_tokens": max(1, len(answer) // 4)},
        },
        "cost": cost,
    }
    return orjson.dumps(rec) + b"\n"


def templated_lines(questions: list[str], prefix: str, repeats: int = 0, seed: int = 0,
                    suffix: str = "") -> Iterator[bytes]:  # fmt: skip
    """Each question once behind the same `prefix` (few-shot block, instruction template),
    then `repeats` exact repeats of questions drawn at random: the case where comparing whole
    prompts would call every question a near-duplicate of every other."""
    rng = random.Random(seed)
    ts = 1_790_000_000.0
    for i, q in enumerate(questions):
        yield chat_line(prefix + q + suffix, ts + i)
    for k in range(repeats):
        yield chat_line(prefix + rng.choice(questions) + suffix, ts + len(questions) + k)


def paraphrase_lines(pairs: list[tuple[str, str]]) -> Iterator[bytes]:
    """Every first question of `pairs`, then every second one: each second line is the same
    question as a line before it, in other words."""
    ts = 1_790_000_000.0
    for i, (a, _) in enumerate(pairs):
        yield chat_line(a, ts + i)
    for i, (_, b) in enumerate(pairs):
        yield chat_line(b, ts + len(pairs) + i)
