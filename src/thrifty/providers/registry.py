"""Which class serves each `provider:` kind of a configured model (the `thrifty.providers`
entry-point group, see `thrifty.plugins`)."""

from __future__ import annotations

from thrifty import plugins
from thrifty.config import Config, ModelConfig
from thrifty.providers.base import Provider

__all__ = ["make_provider"]


def make_provider(config: ModelConfig, root: Config | None = None) -> Provider:
    """The provider for one configured model; `root` gives the local engine its `engine:` section."""
    cls = plugins.providers()[config.provider]
    sections = {"engine": root.section("engine")} if root is not None else {}
    return cls.create(config, sections)
