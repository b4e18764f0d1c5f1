from thrifty.compress.cap import CONCISE, CapSettings, CapStage, apply_cap
from thrifty.gateway import Gateway

from .helpers import Recorder, make_ctx


def test_default_and_maximum() -> None:
    s = CapSettings(enabled=True, default_max_tokens=300, max_tokens=1000)
    body, done = apply_cap("openai", {"model": "gpt-4o-mini", "messages": []}, s)
    assert body["max_tokens"] == 300 and done["max_tokens"] == {"asked": None, "sent": 300}
    body, done = apply_cap("openai", {"model": "gpt-4o-mini", "max_tokens": 5000, "messages": []}, s)
    assert body["max_tokens"] == 1000
    body, done = apply_cap("openai", {"model": "gpt-4o-mini", "max_tokens": 50, "messages": []}, s)
    assert body["max_tokens"] == 50 and done == {}
    body, _ = apply_cap("openai", {"model": "o3-mini", "messages": []}, s)
    assert body["max_completion_tokens"] == 300 and "max_tokens" not in body
    body, _ = apply_cap("anthropic", {"model": "claude-x", "max_tokens": 4096, "messages": []}, s)
    assert body["max_tokens"] == 1000


def test_stop_and_concise() -> None:
    s = CapSettings(enabled=True, concise=True, stop=["\n\nUser:", "###"])
    original = {
        "model": "m",
        "stop": "END",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
    }
    body, done = apply_cap("openai", original, s)
    assert body["stop"] == ["END", "\n\nUser:", "###"]
    assert [m["role"] for m in body["messages"]] == ["system", "system", "user"]
    assert body["messages"][1]["content"] == CONCISE
    assert original["messages"][0] == {"role": "system", "content": "S"} and len(original["messages"]) == 2
    body, _ = apply_cap("anthropic", {"model": "c", "max_tokens": 10, "system": "S", "messages": []}, s)
    assert body["system"] == "S\n\n" + CONCISE and body["stop_sequences"] == ["\n\nUser:", "###"]


async def test_stage_marks_capped_rows_per_route(recorder: Recorder) -> None:
    config = (
        "cap:\n  enabled: false\nroutes:\n  chat:\n    cap:\n      enabled: true\n      max_tokens: 256\n"
    )
    body = {"model": "m", "max_tokens": 4000, "messages": [{"role": "user", "content": "hi"}]}
    ctx = make_ctx(config, body, route="chat")
    stage = CapStage(Gateway(ctx.config))
    await stage.handle(ctx, recorder)
    assert recorder.bodies[-1]["max_tokens"] == 256 and ctx.extra["capped"] is True
    other = make_ctx(config, dict(body))
    await stage.handle(other, recorder)
    assert recorder.bodies[-1]["max_tokens"] == 4000 and "capped" not in other.extra
