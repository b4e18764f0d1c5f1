"""Spend control: virtual keys, budgets and rate limits enforced before a request goes out.

- `keys`: virtual keys and teams, and the store tables they live in (with migrations);
- `limits`: budget and rate-limit specs, and the calendar and rolling windows they count over;
- `estimate`: a request's worst plausible cost (output tokens from the ledger's percentiles);
- `meters`: counters in process or in Redis, reserved all-or-none by one atomic Lua script;
- `outage`: what a replica does while Redis does not answer, and the reconciliation after;
- `control`: `SpendControl`, the admission the server calls before the pipeline and settles after;
- `debounce`: the per-key window in which a repeated request is answered from the first result;
- `alerts`: threshold webhooks; `admin`: the `/v1/thrifty/keys` API; `cli`: `thrifty keys`.
"""

# The package imports none of its modules (they import each other through it, and an import
# here would close a circle); `__all__` names the modules that make up its interface.
__all__ = ["admin", "alerts", "cli", "control", "debounce", "estimate", "keys", "limits", "meters", "outage", "settings"]
