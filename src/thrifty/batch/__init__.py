"""The batch lane: work that can wait, cheaper and exactly once.

Jobs come in through the OpenAI Files + Batches API, the Anthropic Message Batches API
(`routes`) or `thrifty batch run` (`cli`); they live in the store (`store`, `schema`); each
line runs through the levers first and then an execution target (`lane`, `provider`); a
line is settled and billed exactly once (`records`), and a job ends with output files in
the protocols' formats (`files`) and a report (`report`).
"""

from thrifty.batch.inputs import Line, parse_anthropic_requests, parse_jsonl
from thrifty.batch.lane import BatchLane, parse_duration
from thrifty.batch.settings import BatchSettings
from thrifty.batch.store import BatchStore

__all__ = ["BatchLane", "BatchSettings", "BatchStore", "Line", "parse_anthropic_requests", "parse_duration", "parse_jsonl"]
