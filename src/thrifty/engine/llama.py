"""A thin typed wrapper over llama-cpp-python's low-level (ctypes) bindings.

Only what the scheduler needs: load a GGUF into one context whose KV cache is shared by
many sequences (`kv_unified`, so copying a cached prefix to a new sequence shares cells
instead of copying them), tokenize, render pieces, fill a multi-sequence `llama_batch`,
decode, read one logits row, and edit a sequence's KV range.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from thrifty.engine.model_files import ModelFileError
from thrifty.engine.settings import EngineSettings

_backend_lock = threading.Lock()
_backend_ready = False


def _lib() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise ModelFileError(
            "the local engine needs llama-cpp-python: pip install llama-cpp-python (or 'thrifty[local]')"
        ) from None
    return llama_cpp


def cpu_has_amx() -> bool:
    """Whether this CPU has Intel AMX, whose llama.cpp kernels this engine must avoid."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return "amx_int8" in f.read()
    except OSError:
        return False


def _init_backend(lib: Any) -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            # llama-cpp-python prints every llama.cpp log line unless its logger says otherwise.
            chatty = logging.getLogger("llama-cpp-python")
            if chatty.level == logging.NOTSET:
                chatty.setLevel(logging.ERROR)
            lib.llama_backend_init()
            _backend_ready = True


class LlamaModel:
    """One model and one context with `n_seq` sequence ids over a shared KV cache."""

    def __init__(self, path: Path, settings: EngineSettings, n_seq: int, batch_capacity: int) -> None:
        lib = self.lib = _lib()
        _init_backend(lib)
        self.path = path
        mparams = lib.llama_model_default_params()
        if cpu_has_amx():
            # llama.cpp's AMX kernels crash (SIGSEGV in ggml_backend_amx_mul_mat) on this model;
            # plain CPU buffers are safe, and the batched matmuls do not need the repacked layouts.
            mparams.use_extra_bufts = False
        self.model = lib.llama_model_load_from_file(str(path).encode(), mparams)
        if not self.model:
            raise ModelFileError(
                f"llama.cpp could not load {path}: the file is damaged or not a model this llama-cpp-python "
                "supports. Delete it and assemble/download it again, or upgrade llama-cpp-python."
            )
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(lib.llama_model_n_ctx_train(self.model))
        self.size_bytes = int(lib.llama_model_size(self.model))
        self.n_params = int(lib.llama_model_n_params(self.model))
        n_seq = min(n_seq, int(lib.llama_max_parallel_sequences()))
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = settings.n_ctx
        cparams.n_batch = batch_capacity
        cparams.n_ubatch = batch_capacity
        cparams.n_seq_max = n_seq
        cparams.n_threads = settings.threads()
        cparams.n_threads_batch = settings.threads()
        cparams.kv_unified = True  # sequences share cells: a prefix copy costs nothing
        cparams.swa_full = True  # keep all positions of sliding-window layers, so prefixes can be reused
        cparams.no_perf = True
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            lib.llama_model_free(self.model)
            raise ModelFileError(f"llama.cpp could not create a context for {path} (n_ctx={settings.n_ctx})")
        self.n_ctx = int(lib.llama_n_ctx(self.ctx))
        self.n_seq = n_seq
        self.mem = lib.llama_get_memory(self.ctx)
        self.capacity = batch_capacity
        self.batch = lib.llama_batch_init(batch_capacity, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))

    # -- metadata ----------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        raw = self.lib.llama_model_chat_template(self.model, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def apply_chat_template(self, messages: list[tuple[str, str]], template: str | None = None) -> str | None:
        """Render messages with `template` (a built-in name) or the GGUF's own, by llama.cpp's
        built-in renderers; None when there is no template or llama.cpp does not know it."""
        tmpl = template.encode() if template else self.lib.llama_model_chat_template(self.model, None)
        if not tmpl:
            return None
        keep = [(r.encode(), c.encode()) for r, c in messages]
        arr = (self.lib.llama_chat_message * len(keep))(*[self.lib.llama_chat_message(r, c) for r, c in keep])
        size = sum(len(r) + len(c) for r, c in keep) * 2 + 1024
        for _ in range(2):
            buf = ctypes.create_string_buffer(size)
            n = self.lib.llama_chat_apply_template(tmpl, arr, len(keep), True, buf, size)
            if n < 0:
                return None
            if n <= size:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = n + 1
        return None

    # -- tokens ------------------------------------------------------------------------

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        arr = (ctypes.c_int32 * cap)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            arr = (ctypes.c_int32 * cap)()
            n = self.lib.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, parse_special)
        return list(arr[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a generated token stands for (special tokens render as nothing)."""
        got = self._pieces.get(token)
        if got is None:
            buf = self._piece_buf
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
            got = buf.raw[:n]
            self._pieces[token] = got
        return got

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(self.lib.llama_vocab_is_eog(self.vocab, token))

    # -- batch and decode --------------------------------------------------------------

    def set_batch(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """Fill the batch with (token, position, sequence id, wants logits) entries."""
        b = self.batch
        for i, (tok, pos, seq, logits) in enumerate(entries):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if logits else 0
        b.n_tokens = len(entries)

    def decode(self) -> int:
        """Run the batch; 0 = ok, 1 = no room in the KV cache, other = error."""
        return int(self.lib.llama_decode(self.ctx, self.batch))

    def logits(self, index: int) -> np.ndarray:
        """The logits row of batch entry `index` (valid until the next decode)."""
        ptr = self.lib.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    # -- KV ----------------------------------------------------------------------------

    def seq_rm(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        return bool(self.lib.llama_memory_seq_rm(self.mem, seq, p0, p1))

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        self.lib.llama_memory_seq_cp(self.mem, src, dst, p0, p1)

    def seq_pos_max(self, seq: int) -> int:
        return int(self.lib.llama_memory_seq_pos_max(self.mem, seq))

    def clear(self) -> None:
        self.lib.llama_memory_clear(self.mem, True)

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lib.llama_batch_free(self.batch)
            self.lib.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            self.lib.llama_model_free(self.model)
            self.model = None
