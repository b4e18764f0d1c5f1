"""The batch lane: work that can wait, cheaper and exactly once.

Jobs come in through the OpenAI Files + Batches API, the Anthropic Message Batches API
(`routes`) or `thrifty batch run` (`cli`); they live in the store (`store`, `schema`); each
line runs through the levers first and then an execution target (`lane`, `provider`); a
line is settled and billed exactly once (`records`), and a job ends with output files in
the protocols' formats (`files`) and a report (`report`).
"""

# The package's modules; import from them (the package imports none, so that none of them
# imports another through it).
__all__ = ["budget", "cli", "files", "inputs", "lane", "provider", "records", "report", "routes", "schema",
           "settings", "store"]
