"""The compress stage end to end over one request: per route, byte for byte."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

from thrifty.compress.stage import CompressStage
from thrifty.gateway import Gateway
from thrifty.pipeline.pipeline import Pipeline

from .helpers import Recorder, make_ctx
from .test_context import PASSAGES

CONFIG = """
models:
  - name: gpt-4o
    provider: openai
    price: {input: 2.5, output: 10.0}
compress:
  enabled: false
routes:
  rag:
    compress:
      enabled: true
      trim: {html: true}
      context: {enabled: true, ratio: 0.25, min_tokens: 100}
  tight:
    compress:
      enabled: true
      context: {enabled: true, budget_tokens: 5, min_tokens: 0}
"""

RAG_BODY: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [
        {
            "role": "system",
            "content": "<p>Answer   from the context, in one sentence.</p>\n\n\n\n<p>Answer from the context, in one   sentence.</p>",
        },
        {"role": "user", "content": "\n\n".join(PASSAGES) + "\n\nQuestion: How tall is the Eiffel Tower?"},
    ],
    "temperature": 0,
}


def test_off_everywhere_builds_no_stage() -> None:
    ctx = make_ctx("compress: {enabled: false}\n", {})
    assert CompressStage.build(Gateway(ctx.config)) is None
    assert CompressStage.build(Gateway(make_ctx(CONFIG, {}).config)) is not None


async def test_route_with_compression_off_is_byte_identical(recorder: Recorder) -> None:
    raw = json.dumps(RAG_BODY, ensure_ascii=False).encode()
    ctx = make_ctx(CONFIG, json.loads(raw), route="chat")
    stage = CompressStage(Gateway(ctx.config))
    await Pipeline([stage], recorder, stage.gateway.overrides)(ctx)  # the pipeline skips a lever that is off
    assert recorder.sent == [raw]
    assert ctx.savings == {} and ctx.tokens_saved == {} and "compress" not in ctx.extra


async def test_nothing_to_remove_is_byte_identical(recorder: Recorder) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    raw = json.dumps(body).encode()
    ctx = make_ctx(CONFIG, json.loads(raw), route="rag")
    await CompressStage(Gateway(ctx.config)).handle(ctx, recorder)
    assert recorder.sent == [raw] and ctx.savings == {}


async def test_rag_route_trims_and_compresses_and_prices_the_saving(recorder: Recorder) -> None:
    body = copy.deepcopy(RAG_BODY)
    ctx = make_ctx(CONFIG, body, route="rag")
    await CompressStage(Gateway(ctx.config)).handle(ctx, recorder)
    sent = recorder.bodies[0]
    assert body == RAG_BODY  # the client's body is not mutated
    assert sent["messages"][0]["content"] == "Answer from the context, in one sentence."
    question = sent["messages"][1]["content"]
    assert question.endswith("\n\nQuestion: How tall is the Eiffel Tower?") and "330 metres" in question
    assert sent["temperature"] == 0
    trim, context = ctx.tokens_saved["compress.trim"], ctx.tokens_saved["compress.context"]
    assert trim > 0 and context > 300
    assert ctx.savings["compress.context"] == Decimal(context) * Decimal("2.5") / Decimal(1_000_000)
    assert ctx.extra["compress"]["context"]["result"] == "compressed"


async def test_budget_too_small_records_why(recorder: Recorder) -> None:
    raw = json.dumps(RAG_BODY).encode()
    ctx = make_ctx(CONFIG, json.loads(raw), route="tight")
    await CompressStage(Gateway(ctx.config)).handle(ctx, recorder)
    sent = json.loads(recorder.sent[0])
    assert sent["messages"][1] == RAG_BODY["messages"][1]
    assert ctx.extra["compress"]["context"]["result"].startswith(
        "budget of 5 tokens cannot hold the question"
    )
    assert any("sent uncompressed" in n for n in ctx.notes)
