"""Rows a store could not hold: numbers past its 64-bit columns, text that is not UTF-8.

One absurd value from a broken upstream or lever must not make a store refuse a whole batch
(which the writer would retry forever), nor make the journal unable to write a line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from decimal import Decimal
from typing import Any

from thrifty.ledger.record import LedgerRecord, to_pico

__all__ = ["clean_text", "storable"]

log = logging.getLogger(__name__)

_INT64 = 2**63
_COUNTS = ("status", "input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "output_tokens", "reasoning_tokens")


def _fits(value: int) -> bool:
    return -_INT64 <= value < _INT64


def _pico_fits(amount: object) -> bool:
    try:
        return isinstance(amount, Decimal) and _fits(to_pico(amount))
    except (ArithmeticError, ValueError):  # NaN, infinity
        return False


#: The largest amount in USD whose picodollars fit a signed 64-bit column (about 9.2 million).
_MAX_USD = Decimal(_INT64 - 1) / Decimal(10**12)


def _plain(record: LedgerRecord) -> bool:
    """True for the usual row: small integer counts, finite amounts well inside the columns."""
    for value in (record.status, record.input_tokens, record.cache_read_tokens, record.cache_write_tokens,
                  record.cache_write_1h_tokens, record.output_tokens, record.reasoning_tokens):
        if type(value) is not int or not -_INT64 <= value < _INT64:
            return False
    for amount in (record.cost, record.counterfactual_cost):
        if type(amount) is not Decimal or not amount.is_finite() or not -_MAX_USD < amount < _MAX_USD:
            return False
    return not record.savings


def storable(record: LedgerRecord) -> LedgerRecord:
    """`record` with every number the store's 64-bit integer columns cannot hold set to 0 (the
    original kept as text in `extra["unstorable"]`): one absurd value, from a broken upstream
    or lever, must not make the store refuse the batch, which the writer would retry forever."""
    if _plain(record):
        return record
    bad: dict[str, str] = {}
    for name in _COUNTS:
        value = getattr(record, name)
        if not isinstance(value, int) or not _fits(value):
            bad[name] = str(value)
            setattr(record, name, 0)
    for name in ("cost", "counterfactual_cost"):
        if not _pico_fits(getattr(record, name)):
            bad[name] = str(getattr(record, name))
            setattr(record, name, Decimal(0))
    if not all(_pico_fits(v) for v in record.savings.values()) or not _pico_fits(sum(record.savings.values(), Decimal(0))):
        bad["savings"] = str(record.savings)
        record.savings = {}
    if bad:
        log.error("ledger row %s had values no store column can hold, written as 0: %s", record.request_id, bad)
        record.extra = {**record.extra, "unstorable": bad}
    return record


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode()
            return value
        except UnicodeEncodeError:
            return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def clean_text(record: LedgerRecord) -> LedgerRecord:
    """`record` with every string (in fields, tags, extra and bodies) made valid UTF-8."""
    for f in fields(record):
        value = getattr(record, f.name)
        if isinstance(value, str | dict | list):
            setattr(record, f.name, _clean(value))
    return record

