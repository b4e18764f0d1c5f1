"""A ledger row kept beside its settled line, until the ledger has it.

Settling a line and writing its ledger row are two stores' writes; a crash can fall between
them. So the settled line carries its row (as JSON), a line is marked billed only after the
ledger wrote it, and whoever finds a settled line not billed writes the row again. The row's
request id is derived from (job, line), and the ledger's insert replaces a row of the same
id, so writing it twice still leaves exactly one row per line.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import orjson

from thrifty.ledger.record import LedgerRecord

__all__ = ["line_request_id", "record_from_json", "record_to_json"]


def line_request_id(job_id: str, idx: int) -> str:
    """The ledger request id of line `idx` of `job_id`: the same whoever settles it."""
    return f"req_{job_id}_{idx:07d}"


def record_to_json(record: LedgerRecord) -> str:
    return orjson.dumps(dataclasses.asdict(record), default=str).decode()


def record_from_json(text: str) -> LedgerRecord:
    data: dict[str, Any] = orjson.loads(text)
    data["cost"] = Decimal(data["cost"])
    data["counterfactual_cost"] = Decimal(data["counterfactual_cost"])
    data["savings"] = {k: Decimal(v) for k, v in (data.get("savings") or {}).items()}
    return LedgerRecord(**data)
