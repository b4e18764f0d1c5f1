"""What the live-cascade tests share: a cascade trained on GSM8K answers, and one request
through the gateway's pipeline."""

from __future__ import annotations

from pathlib import Path

from thrifty.gateway import Gateway
from thrifty.protocol.view import answer_text
from thrifty.routing.cascade_eval import CascadeConfig, train_cascade
from thrifty.routing.datasets import convert_routellm_gsm8k
from thrifty.routing.labeled import Example, split_fixed, write_labeled
from thrifty.types import Context

CHEAP, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def cascade_files(routing_data: Path, folder: Path) -> dict[str, Path]:
    """A Mixtral-then-GPT-4 cascade trained on 300 GSM8K questions of the fixed train split, and
    40 test questions for the replay models (`test`, `cascade`)."""
    conv = convert_routellm_gsm8k(routing_data / "routellm_gsm8k_responses.csv")
    train, test = split_fixed(conv.examples, 0.8, salt="gsm8k-80-20")
    art, _ = train_cascade(train[:300], CascadeConfig([[CHEAP], [STRONG]], "numeric"), target=0.9, max_cost=0.5)
    art.save(folder / "cascade.pkl")
    write_labeled(test[:40], folder / "test.jsonl")
    return {"test": folder / "test.jsonl", "cascade": folder / "cascade.pkl"}


def cascade_config(files: dict[str, Path], cascade: str, store: Path | None = None, more_models: str = "") -> str:
    """A config replaying both models from `files["test"]`, routed through `cascade` (the
    inside of its flow mapping); a SQLite ledger at `store` if given."""
    head = f'store: "sqlite:///{store}"\n' if store is not None else ""
    return head + f"""models:
  - {{name: {CHEAP}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
  - {{name: {STRONG}, provider: replay, options: {{dataset: "{files["test"]}"}}}}
{more_models}route:
  default: {STRONG}
  cascade: {{{cascade}}}
"""


async def serve(gw: Gateway, ex: Example) -> tuple[Context, str]:
    """Ask `ex`'s question of the strong model through the pipeline: the context and the answer."""
    body = {"model": STRONG, "messages": [{"role": "user", "content": ex.text}]}
    ctx = Context(protocol="openai", body=body, config=gw.config, requested_model=STRONG)
    assert gw.pipeline is not None
    reply = await gw.pipeline(ctx)
    assert reply.ok
    return ctx, answer_text(reply.body)
