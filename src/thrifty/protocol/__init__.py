"""The two wire protocols the gateway speaks, and translation between them.

- `openai` / `anthropic`: usage blocks to and from `Usage`, streams collected into complete
  bodies (`collect_*`) and complete bodies replayed as streams (`replay_*`).
- `translate`: requests and complete responses between the protocols, plus (re-exported from
  `streams` and `errors`) stream translators and each protocol's error shape.
- `ledger.tokens` estimates tokens offline when a provider reports no usage.
"""
