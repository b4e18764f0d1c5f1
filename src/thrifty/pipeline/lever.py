"""The lever contract: one base class, and the policy the pipeline applies around every lever.

A lever is a stage with a typed settings model. It declares `name` (its config section and
the key of its saving in the ledger) and `Settings` (a pydantic model); the base validates
the settings of every traffic class once, caches them, and decides whether the lever is
built at all (`build` returns None when no route enables it, so an unused lever costs
nothing on the request path).

The pipeline, not the lever, decides whether a lever acts on a request (`guarded`):

- off for this request: `ctx.levers_off` (a shadow rerun's reference answer);
- off for the traffic class, switched off at run time by shadow evaluation (`LeverOverrides`);
- off for the traffic class in the config (`enabled: false` under `routes.<route>.<lever>`);
- client traffic only (`client_only`): shadow evaluation never samples its own reruns or evals.

A lever that is off is skipped (`when_off`, by default: pass the request on). No lever
writes these checks itself, so none can forget one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from thrifty.config import Config, lever_model
from thrifty.types import Context, Handler, Reply

if TYPE_CHECKING:
    from typing import Self

    from thrifty.gateway import Gateway

__all__ = ["Lever", "LeverOverrides", "guarded"]

S = TypeVar("S", bound=BaseModel)


class Lever(ABC, Generic[S]):
    """Base of every lever. Subclasses set `name` and `Settings` and implement `handle`."""

    name: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    #: Whether the lever acts only on client traffic (not on shadow reruns or eval runs).
    client_only: ClassVar[bool] = False
    #: Whether the lever is on when its section is absent from the config (most are off).
    on_by_default: ClassVar[bool] = False

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.config: Config = gateway.config
        self._settings: dict[str, S] = {}

    # -- settings -------------------------------------------------------------------------

    @classmethod
    def traffic_classes(cls, config: Config) -> list[str]:
        """`default` and every traffic class that overrides this lever."""
        return ["default", *(r for r in config.lever_routes(cls.name) if r != "default")]

    @classmethod
    def configured(cls, config: Config) -> bool:
        """Whether the config names this lever at all (its section, or a route override)."""
        return cls.on_by_default or config.has_section(cls.name) or bool(config.lever_routes(cls.name))

    @classmethod
    def settings_of(cls, config: Config, traffic: str = "default") -> S:
        """This lever's settings for `traffic`, validated (errors carry file, line and key)."""
        return lever_model(config, cls.name, cls.Settings, traffic)  # type: ignore[return-value]

    def settings(self, traffic: str) -> S:
        """The settings for `traffic`, validated once and cached."""
        found = self._settings.get(traffic)
        if found is None:
            found = self._settings[traffic] = self.settings_of(self.config, traffic)
        return found

    def enabled(self, traffic: str) -> bool:
        """Whether the config turns this lever on for `traffic` (`enabled`, where the settings
        have that field)."""
        return bool(getattr(self.settings(traffic), "enabled", True))

    # -- life cycle -----------------------------------------------------------------------

    @classmethod
    def build(cls, gateway: Gateway) -> Self | None:
        """The lever for `gateway`, or None when the config enables it on no traffic class."""
        if not cls.configured(gateway.config):
            return None
        lever = cls(gateway)
        if not any(lever.enabled(t) for t in cls.traffic_classes(gateway.config)):
            return None
        lever.start()
        return lever

    def start(self) -> None:
        """Called once when the lever is built: open stores, register services, warm models."""

    async def aclose(self) -> None:
        """Called once at shutdown."""

    # -- the request path -----------------------------------------------------------------

    @abstractmethod
    async def handle(self, ctx: Context, next: Handler) -> Reply:
        """Act on the request: answer it, rewrite it and call `next`, or look at the reply."""

    def when_off(self, ctx: Context, next: Handler) -> Awaitable[Reply]:
        """What the pipeline does instead of `handle` when the lever is off for a request."""
        return next(ctx)


class LeverOverrides:
    """Levers switched off at run time, per traffic class (by shadow evaluation, or an admin).

    Only ever changed from the event loop thread, so the request path reads it without a lock.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._off: set[tuple[str, str]] = set(pairs)

    def disable(self, traffic: str, lever: str) -> None:
        self._off.add((traffic, lever))

    def enable(self, traffic: str, lever: str) -> bool:
        """Turn `lever` back on for `traffic`; returns whether it was off."""
        was = (traffic, lever) in self._off
        self._off.discard((traffic, lever))
        return was

    def is_off(self, traffic: str, lever: str) -> bool:
        return (traffic, lever) in self._off

    def pairs(self) -> list[tuple[str, str]]:
        return sorted(self._off)

    def __contains__(self, pair: object) -> bool:
        return pair in self._off

    def __len__(self) -> int:
        return len(self._off)


def guarded(lever: Lever[Any], overrides: LeverOverrides, next: Handler) -> Callable[[Context], Awaitable[Reply]]:
    """`lever` around `next`, with the pipeline's lever policy in front of it.

    A plain function returns the awaitable of whichever runs, so the guard adds no coroutine
    frame to the request path.
    """
    name = lever.name
    handle = lever.handle
    when_off = lever.when_off
    enabled = lever.enabled
    client_only = lever.client_only
    off = overrides._off

    def entry(ctx: Context) -> Awaitable[Reply]:
        if (
            (client_only and ctx.origin != "client")
            or name in ctx.levers_off
            or (off and (ctx.traffic, name) in off)
            or not enabled(ctx.traffic)
        ):
            return when_off(ctx, next)
        return handle(ctx, next)

    return entry
