"""The HTTP surface (aiohttp): OpenAI and Anthropic routes, health, spend, extensions."""

from __future__ import annotations

#: HTTP extensions, as "module:setup" where `setup(app: web.Application, gateway: Gateway)`
#: adds routes (admin API, dashboard, metrics, feedback). Each tool adds one line here.
EXTENSIONS: list[str] = []
