import json
from decimal import Decimal
from typing import Any

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.pipeline.canonicalize import (
    CanonicalizeSettings,
    CanonicalizeStage,
    add_breakpoints,
    canonical_body,
    prompt_cache_saving,
    sort_schema,
)
from thrifty.types import Context, Reply, Usage, Wire

LONG = "The quick brown fox jumps over the lazy dog. " * 150  # about 1,500 tokens

CONFIG = """
models:
  - name: claude
    provider: anthropic
    model: claude-sonnet-4-5
    price: {input: 3.0, output: 15.0, cache_read: 0.3, cache_write: 3.75}
canonicalize:
  cache_control: false
routes:
  docs:
    canonicalize:
      cache_control: true
"""


def ctx_for(
    body: dict[str, Any], protocol: Wire = "anthropic", headers: dict[str, str] | None = None
) -> Context:
    config = parse_config(CONFIG)
    return Context(
        protocol=protocol,
        body=body,
        config=config,
        requested_model=body.get("model", ""),
        headers=headers or {},
    )


def test_schema_keys_sorted_but_property_order_and_lists_kept() -> None:
    schema = {
        "type": "object",
        "required": ["b", "a"],
        "properties": {"b": {"type": "string", "description": "B"}, "a": {"enum": [3, 1], "type": "integer"}},
    }
    out = sort_schema(schema)
    assert list(out) == ["properties", "required", "type"]
    assert list(out["properties"]) == ["b", "a"]
    assert list(out["properties"]["b"]) == ["description", "type"]
    assert out["required"] == ["b", "a"] and out["properties"]["a"]["enum"] == [3, 1]
    assert list(sort_schema(schema, sort_properties=True)["properties"]) == ["a", "b"]


def test_two_clients_with_different_key_order_send_the_same_bytes() -> None:
    def tool(order: int) -> dict[str, Any]:
        params = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        if order:
            params = dict(reversed(list(params.items())))
        return {"type": "function", "function": {"name": "weather", "parameters": params}}

    s = CanonicalizeSettings()
    a = canonical_body({"model": "m", "messages": [], "tools": [tool(0)]}, s)
    b = canonical_body({"model": "m", "messages": [], "tools": [tool(1)]}, s)
    assert json.dumps(a) == json.dumps(b)
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object", "additionalProperties": False}},
    }
    out = canonical_body({"response_format": fmt}, s)
    assert list(out["response_format"]["json_schema"]["schema"]) == ["additionalProperties", "type"]


def test_tools_sorted_by_name_only_when_asked() -> None:
    tools = [{"name": "zeta", "input_schema": {}}, {"name": "alpha", "input_schema": {}}]
    assert [t["name"] for t in canonical_body({"tools": tools}, CanonicalizeSettings())["tools"]] == [
        "zeta",
        "alpha",
    ]
    assert [
        t["name"] for t in canonical_body({"tools": tools}, CanonicalizeSettings(sort_tools=True))["tools"]
    ] == ["alpha", "zeta"]


def test_breakpoints_on_long_stable_prefixes() -> None:
    body = {
        "model": "claude",
        "max_tokens": 100,
        "system": "You are a careful analyst. " + LONG,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": LONG + " report one"},
                    {"type": "text", "text": "Summarise it."},
                ],
            },
            {"role": "assistant", "content": "It is about a fox."},
            {"role": "user", "content": "And the dog?"},
        ],
    }
    new, placed = add_breakpoints(body, CanonicalizeSettings(cache_control=True))
    assert placed == ["system", "document", "history"]
    assert new["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert new["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert new["messages"][1]["content"] == [
        {"type": "text", "text": "It is about a fox.", "cache_control": {"type": "ephemeral"}}
    ]
    assert new["messages"][2]["content"] == "And the dog?"
    assert "cache_control" not in json.dumps(body)  # the client's body is not mutated


def test_breakpoints_respect_the_limit_of_four_and_short_prompts() -> None:
    mark = {"type": "ephemeral"}
    body = {
        "system": [{"type": "text", "text": LONG, "cache_control": mark}],
        "tools": [{"name": "a", "input_schema": {}, "cache_control": mark}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": LONG, "cache_control": mark},
                    {"type": "text", "text": "q"},
                ],
            },
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "q2"},
        ],
    }
    new, placed = add_breakpoints(body, CanonicalizeSettings(cache_control=True))
    assert len(placed) == 1 and json.dumps(new).count("cache_control") == 4
    short = {"system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]}
    assert add_breakpoints(short, CanonicalizeSettings(cache_control=True)) == (short, [])


def test_cache_saving_prices_reads_and_writes() -> None:
    ctx = ctx_for({"model": "claude"})
    saved = prompt_cache_saving(
        ctx, Usage(input_tokens=10, cache_read_tokens=10_000, cache_write_tokens=2_000)
    )
    # 10,000 reads save (3.00 - 0.30)/M each; 2,000 writes cost (3.75 - 3.00)/M more each.
    assert saved == Decimal("0.027") - Decimal("0.0015")
    assert prompt_cache_saving(ctx_for({"model": "unknown"}), Usage(cache_read_tokens=5)) == 0


async def test_stage_reads_tags_then_applies_the_route() -> None:
    body = {
        "model": "claude",
        "max_tokens": 10,
        "system": LONG,
        "messages": [{"role": "user", "content": "q"}],
    }
    ctx = ctx_for(
        dict(body), headers={"X-Thrifty-Route": "docs", "X-Thrifty-Tags": "feature=search, team=core"}
    )
    stage = CanonicalizeStage(Gateway(ctx.config))
    seen: list[dict[str, Any]] = []

    async def upstream(c: Context) -> Reply:
        seen.append(c.body)
        return Reply(status=200, body={}, usage=Usage(input_tokens=5, cache_read_tokens=1_500))

    await stage.handle(ctx, upstream)
    assert ctx.tags == {"route": "docs", "feature": "search", "team": "core"}
    assert seen[0]["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert ctx.extra["cache_breakpoints"] == ["system"]
    assert ctx.savings["canonicalize"] == Decimal(1500) * Decimal("2.7") / Decimal(1_000_000)

    plain = ctx_for(dict(body))
    await stage.handle(plain, upstream)
    assert seen[1] is plain.body and plain.body["system"] == LONG and "canonicalize" not in plain.savings


async def test_body_untouched_when_already_canonical() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "metadata": {"route": "faq"}}
    ctx = ctx_for(body, protocol="openai")
    stage = CanonicalizeStage(Gateway(ctx.config))

    async def upstream(c: Context) -> Reply:
        return Reply(status=200, body={})

    await stage.handle(ctx, upstream)
    assert ctx.body is body and ctx.tags["route"] == "faq"


def test_built_only_when_configured() -> None:
    assert CanonicalizeStage.build(Gateway(parse_config("models: []\n"))) is None
    assert CanonicalizeStage.build(Gateway(parse_config("canonicalize: {}\n"))) is not None
    assert CanonicalizeStage.build(Gateway(parse_config(CONFIG))) is not None
