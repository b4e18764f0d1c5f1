"""Routing: send each request to the cheapest model that will answer it well.

- `labeled` / `datasets`: the labeled format and converters from RouterBench and RouteLLM.
- `features`, `learned`, `policy`: prompt features, per-candidate P(good) models, the decision.
- `calibrate`, `evaluate`: the knob for a quality target; cost-quality curves, APGR.
- `rules`, `cascade`, `stage`: the `route` pipeline stage (rules, learned router, cascade).
"""
