"""Extension points: levers, config sections, providers, server extensions and commands.

Everything pluggable registers through an entry-point group, thrifty's built-ins included
(see `[project.entry-points]` in pyproject.toml), so a third-party package extends thrifty
the same way the built-ins do, without editing thrifty:

| group                | name               | value                                               |
| -------------------- | ------------------ | --------------------------------------------------- |
| `thrifty.levers`     | the lever's name   | a `thrifty.pipeline.lever.Lever` subclass           |
| `thrifty.sections`   | a config section   | a pydantic model (settings of a tool, not a lever)  |
| `thrifty.providers`  | the `provider:` kind | a `thrifty.providers.base.Provider` subclass      |
| `thrifty.extensions` | any                | `setup(app, gateway)` adding HTTP routes            |
| `thrifty.commands`   | the command name   | a click command or group                            |
| `thrifty.cache_stores` | a URL scheme     | a `ResponseStore` subclass, built as `cls(url)`     |

Stage order is explicit: `DEFAULT_ORDER` places the built-in levers; a third-party lever
names its place with a `place_after` (or `place_before`) class attribute naming another
lever, else it runs just before `route`. The registry reads entry points once per process;
`reset()` forgets them (tests that install a plugin call it).
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from thrifty.pipeline.lever import Lever
    from thrifty.providers.base import Provider

__all__ = [
    "DEFAULT_ORDER",
    "cache_stores",
    "commands",
    "extensions",
    "lever_order",
    "levers",
    "providers",
    "reset",
    "sections",
]

log = logging.getLogger(__name__)

GROUPS = ("thrifty.levers", "thrifty.sections", "thrifty.providers", "thrifty.extensions", "thrifty.commands",
          "thrifty.cache_stores")

#: The request path (DESIGN.md): shadow first (it must see the body as the client sent it and
#: the reply as the client gets it), then the levers in the order their savings compose.
DEFAULT_ORDER = ("shadow", "canonicalize", "cache", "semantic_cache", "dedup", "compress", "cap", "route")


@functools.cache
def _entries(group: str) -> tuple[EntryPoint, ...]:
    found = sorted(entry_points(group=group), key=lambda ep: ep.name)
    if group in ("thrifty.levers", "thrifty.providers") and not found:
        raise RuntimeError(
            f"no entry points in group {group!r}: thrifty is not installed as a package "
            "(run `pip install -e .` in the checkout, or scripts/setup.sh)"
        )
    return tuple(found)


def _load(group: str) -> dict[str, Any]:
    loaded: dict[str, Any] = {}
    for ep in _entries(group):
        if ep.name in loaded:
            log.warning("entry point %s in %s is registered twice; keeping the first", ep.name, group)
            continue
        loaded[ep.name] = ep.load()
    return loaded


@functools.cache
def levers() -> dict[str, type[Lever[Any]]]:
    """Every registered lever class by name."""
    found = _load("thrifty.levers")
    for name, cls in found.items():
        if getattr(cls, "name", None) != name:
            raise RuntimeError(f"lever entry point {name!r} loads {cls!r}, whose `name` is {getattr(cls, 'name', None)!r}")
    return found


@functools.cache
def sections() -> dict[str, type[BaseModel]]:
    """Every config section a lever or tool owns, with its settings model."""
    out: dict[str, type[BaseModel]] = {name: cls.Settings for name, cls in levers().items()}
    for name, model in _load("thrifty.sections").items():
        if name in out:
            raise RuntimeError(f"config section {name!r} is registered by a lever and a tool")
        out[name] = model
    return out


@functools.cache
def providers() -> dict[str, type[Provider]]:
    """Every provider kind (`provider:` in a model's config) with its class."""
    return _load("thrifty.providers")


@functools.cache
def cache_stores() -> dict[str, Any]:
    """Response-cache stores of plugins, by URL scheme (the built-in ones need no entry)."""
    return _load("thrifty.cache_stores")


def extensions() -> list[Any]:
    """Every server extension's `setup(app, gateway)`, in name order."""
    return list(_load("thrifty.extensions").values())


def command_entries() -> tuple[EntryPoint, ...]:
    """The command entry points, not loaded (`thrifty --help` loads none of them)."""
    return _entries("thrifty.commands")


def commands() -> dict[str, click.Command]:
    return _load("thrifty.commands")


def lever_order(names: list[str] | None = None) -> list[str]:
    """The request-path order of every registered lever: `DEFAULT_ORDER`, with third-party
    levers at the place they name."""
    registry = levers()
    order = [n for n in DEFAULT_ORDER if n in registry]
    for name in sorted(set(registry) - set(order)):
        cls = registry[name]
        after = getattr(cls, "place_after", None)
        before = getattr(cls, "place_before", None)
        if isinstance(after, str) and after in order:
            order.insert(order.index(after) + 1, name)
        elif isinstance(before, str) and before in order:
            order.insert(order.index(before), name)
        elif "route" in order:
            order.insert(order.index("route"), name)
        else:
            order.append(name)
    if names is not None:
        return [n for n in order if n in names]
    return order


def reset() -> None:
    """Forget what was loaded (after installing or removing a plugin in this process)."""
    for fn in (_entries, levers, sections, providers, cache_stores):
        fn.cache_clear()
