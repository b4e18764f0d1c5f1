"""Hostile input, generated: whatever a client sends, thrifty answers in the protocol's own
error shape (or serves the request), never fails with a 5xx of its own making, keeps
answering, and leaves exactly one ledger row for every request that reached the pipeline.

The gateway and the mock upstream run on real sockets in a background event loop, so that
hypothesis (which is synchronous) drives them with a plain HTTP client.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningGateway, free_port, mock_config
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing.mock_upstream import MockUpstream

EXAMPLES = int(os.environ.get("THRIFTY_FUZZ_EXAMPLES", "150"))
PATHS = ("/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens")
MODELS = ("gpt-test", "claude-test", "nope", "")


class Live:
    """thrifty and the mock upstream on a background event loop."""

    def __init__(self, tmp: Path, levers: str = "") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.upstream = self.run(MockUpstream().start())
        cfg = mock_config(self.upstream, tmp, "server: {max_body_bytes: 200000}\n" + levers)
        self.gw: RunningGateway = self.run(self._start(cfg))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self, cfg: str) -> RunningGateway:
        gateway = Gateway(parse_config(cfg))
        runner = web.AppRunner(create_app(gateway), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return RunningGateway(gateway, runner, port)

    def rows_for(self, request_id: str) -> int:
        ledger = self.gw.gateway.ledger
        assert ledger is not None
        assert ledger.flush(5)
        return int(ledger.store.execute(ledger.store.ph("SELECT COUNT(*) FROM requests WHERE request_id = ?"),
                                        (request_id,))[0][0])

    def count(self) -> int:
        ledger = self.gw.gateway.ledger
        assert ledger is not None
        assert ledger.flush(5)
        return ledger.store.count()

    def stop(self) -> None:
        self.run(self.gw.runner.cleanup())
        self.run(self.upstream.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


#: The bare core, and the core with the levers that are on by default in most configs.
LEVERS = {"bare": "", "levers": "cache: {enabled: true}\ndedup: {enabled: true}\n"}


@pytest.fixture(scope="module", params=list(LEVERS))
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = Live(tmp_path_factory.mktemp("fuzz"), LEVERS[request.param])
    yield server
    server.stop()


# -- strategies ------------------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", "\x00", "\u202e", "\ufeff", "é" * 3, "🦙", "\U0010ffff", "a\x00b", "[cut]", "\\ud800"]),
)
numbers = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 2**63 - 1, 2**64 - 1, 1e308, -0.0]),
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | odd_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)


def _message(protocol: str) -> st.SearchStrategy[Any]:
    roles = ["user", "assistant", "system", "tool", "developer", "wizard", None, 3]
    content = st.one_of(odd_text, json_values, st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "image", "tool_result", "bogus"])},
                              optional={"text": json_values, "cache_control": json_values}),
        max_size=3))
    return st.one_of(
        st.fixed_dictionaries({"role": st.sampled_from(roles), "content": content}),
        st.fixed_dictionaries({"role": st.just("user"), "content": odd_text}),
        json_values,
    )


FIELDS = ["stream", "max_tokens", "temperature", "top_p", "tools", "tool_choice", "metadata", "stream_options",
          "response_format", "stop", "n", "system", "stop_sequences", "max_completion_tokens", "thinking", "seed",
          "logit_bias", "user", "model", "messages"]
valid_tools = st.sampled_from([
    [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    [{"name": "f", "input_schema": {"type": "object"}}],
])


@st.composite
def bodies(draw: st.DrawFn, protocol: str) -> dict[str, Any]:
    """Mostly a valid request with a few fields replaced by garbage, removed or added, so
    that many examples get past validation and into the pipeline, translation included."""
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(MODELS[:2] * 4 + MODELS)),
        "messages": [{"role": "user", "content": draw(odd_text)}],
        "max_tokens": 50,
    }
    if draw(st.integers(0, 3)) == 0:
        body["messages"] = draw(st.lists(_message(protocol), min_size=1, max_size=3))
    if draw(st.booleans()):
        body["stream"] = True
        if draw(st.booleans()):
            body["stream_options"] = {"include_usage": draw(st.booleans())}
    if draw(st.integers(0, 4)) == 0:
        body["tools"] = draw(valid_tools)
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        if draw(st.integers(0, 4)) == 0:
            body.pop(field, None)
        else:
            body[field] = draw(json_values)
    return body


RAW = [
    b"", b"null", b"[]", b"\"x\"", b"{", b"{\"model\": NaN}", b"{\"model\": \"gpt-test\", \"max_tokens\": Infinity}",
    b"{\"model\": \"gpt-test\", \"messages\": [{\"role\": \"user\", \"content\": \"\\ud800\"}]}",
    b"{\"model\": \"gpt-test\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"max_tokens\": 1e999}",
    b"{\"model\": \"gpt-test\", \"model\": 5, \"messages\": []}",
    b"\xef\xbb\xbf{\"model\": \"gpt-test\"}", b"\xff\xfe\x00", b"{\"a\": \"\x00\"}",
    b"[" * 5000 + b"]" * 5000,
    b"{\"model\": \"gpt-test\", \"messages\": " + b"[" * 3000 + b"]" * 3000 + b"}",
    b"{\"model\": \"gpt-test\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"metadata\": "
    + b"{\"a\":" * 900 + b"1" + b"}" * 900 + b"}",
]


def _encode(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:  # integers past 64 bits: write them by hand
        import json

        return json.dumps(body).encode()


near_valid = st.builds(_encode, st.sampled_from(["openai", "anthropic"]).flatmap(bodies))
_others = st.one_of(
    st.sampled_from(RAW),
    st.builds(lambda v: _encode({"v": v})[5:-1].strip(), json_values),
    st.binary(max_size=64),
)
#: Three in four payloads are near-valid requests, so that most reach the pipeline.
payloads = st.integers(0, 3).flatmap(lambda i: near_valid if i else _others)
header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip),
    # Bytes that are not UTF-8 (HTTP allows them): aiohttp escapes them as lone surrogates.
    st.lists(st.sampled_from([*range(0x21, 0x7f), *range(0x80, 0x100)]), max_size=20).map(bytes),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                         "multipart/form-data; boundary=x", "application/json; charset=latin-1"]),
        "X-Thrifty-Tags": st.one_of(header_values, st.sampled_from(["route=a,feature=b", "route=", "=x", ",,,",
                                                                    "route=a=b", "route=" + "x" * 65]),
                                    st.just("route=fuzz"), st.just("feature=x , route=y")),
        "X-Thrifty-Task": header_values,
        "anthropic-version": header_values,
        "anthropic-beta": header_values,
        "Authorization": header_values,
        "x-api-key": header_values,
    },
)


def _check_shape(path: str, response: httpx.Response) -> None:
    """An error names its problem in the shape of the route's protocol."""
    body = response.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error", body
        error = body["error"]
    else:
        error = body["error"]
    assert isinstance(error["type"], str) and error["type"], body
    assert isinstance(error["message"], str) and len(error["message"]) > 5, body


@settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("THRIFTY_FUZZ_RANDOM") is None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(path=st.sampled_from(PATHS), payload=payloads, hdrs=headers)
def test_hostile_requests_get_protocol_errors_and_one_ledger_row(
    live: Live, path: str, payload: bytes, hdrs: dict[str, str | bytes]
) -> None:
    before = live.count()
    with httpx.Client(timeout=20) as http:
        raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in hdrs.items()]
        r = http.post(live.gw.url + path, content=payload, headers=raw)
        event(f"{path} -> {r.status_code} {r.text[:90] if r.status_code >= 400 else ''}")
        assert r.status_code < 500, (r.status_code, r.text[:500])
        if r.status_code >= 400:
            _check_shape(path, r)
        elif r.headers.get("content-type", "").startswith("text/event-stream"):
            assert r.text.endswith("\n\n")
        else:
            r.json()
        # The server keeps answering.
        assert http.get(live.gw.url + "/healthz").status_code == 200
    request_id = r.headers.get("X-Thrifty-Request-Id")
    if path.endswith("count_tokens"):
        assert live.count() == before  # token counting is not a billed request
    elif request_id:
        assert live.rows_for(request_id) == 1
        assert live.count() == before + 1
    else:
        assert live.count() == before, (r.status_code, r.text[:300])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("payload", RAW, ids=range(len(RAW)))
def test_known_hostile_bodies(live: Live, path: str, payload: bytes) -> None:
    """Every hand-written hostile body, on every route (the fuzz test samples only some)."""
    before = live.count()
    with httpx.Client(timeout=20) as http:
        r = http.post(live.gw.url + path, content=payload, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    _check_shape(path, r)
    assert live.count() == before
