"""Streaming readers for the logs `thrifty audit` understands.

- thrifty's own ledger: a SQLite file or a postgresql:// URL (table `requests`, and
  `task_outcomes` for cost per resolved task);
- JSONL in OpenAI format: one object per line with `request`, `response`, optional
  `timestamp` and `tags` (route, feature, key, task), optional `cost` and `latency_ms`;
  a line `{"task": ..., "success": ...}` records a task outcome;
- LiteLLM spend logs (rows of its `LiteLLM_SpendLogs` table) exported as JSONL or as one
  JSON array.

Every reader yields rows one at a time and never holds the file in memory. A line that
cannot be read is counted in `BadLines` with its number and reason, and reading goes on.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from thrifty.audit.row import AuditRow, fill_from_request, fill_from_response
from thrifty.protocol.view import content_text

Format = Literal["auto", "ledger", "jsonl", "litellm"]

#: How many bad lines are listed by number (all of them are counted).
BAD_LINES_LISTED = 50


@dataclass
class BadLines:
    """Lines that could not be read: counted, the first few listed with their reason."""

    count: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, reason: str) -> None:
        self.count += 1
        if len(self.examples) < BAD_LINES_LISTED:
            self.examples.append((line, reason[:200]))


@dataclass
class TaskOutcome:
    task: str
    success: bool
    score: float | None = None


class LogSource:
    """A log to audit: iterate it for `AuditRow`s and `TaskOutcome`s; `bad` fills as it goes."""

    def __init__(self, location: str, fmt: Format = "auto") -> None:
        self.location = location
        self.format: Format = detect_format(location) if fmt == "auto" else fmt
        self.bad = BadLines()
        #: Bytes read so far (files only), for a progress bar.
        self.position = [0]

    def size_hint(self) -> int | None:
        """Bytes in the file (for a progress bar), or None for a database URL."""
        if self.location.startswith(("postgres://", "postgresql://")):
            return None
        try:
            return os.path.getsize(self.location)
        except OSError:
            return None

    def row_count(self) -> int | None:
        """Rows in a ledger (for a progress bar), or None for files or when it cannot be counted."""
        if self.format != "ledger":
            return None
        try:
            if self.location.startswith(("postgres://", "postgresql://")):
                import psycopg

                with psycopg.connect(self.location) as conn:
                    found = conn.execute("SELECT COUNT(*) FROM requests").fetchone()
            else:
                path = self.location.removeprefix("sqlite:///").removeprefix("sqlite://")
                conn2 = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    found = conn2.execute("SELECT COUNT(*) FROM requests").fetchone()
                finally:
                    conn2.close()
        except Exception:  # the read itself will report the real problem
            return None
        return int(found[0]) if found else None

    def __iter__(self) -> Iterator[AuditRow | TaskOutcome]:
        if self.format == "ledger":
            yield from read_ledger(self.location, self.bad)
        elif self.format == "jsonl":
            yield from read_jsonl(self.location, self.bad, self.position)
        else:
            yield from read_litellm(self.location, self.bad, self.position)


def detect_format(location: str) -> Format:
    """Guess the log's format from its URL, its first bytes and its first record."""
    if location.startswith(("postgres://", "postgresql://", "sqlite://")):
        return "ledger"
    path = Path(location)
    with path.open("rb") as f:
        head = f.read(1 << 16)
    if head.startswith(b"SQLite format 3\x00"):
        return "ledger"
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return "litellm"
    for raw in stripped.splitlines():
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            if {"spend", "call_type", "startTime"} & obj.keys():  # LiteLLM rows also have `response`
                return "litellm"
            if "request" in obj or "response" in obj:
                return "jsonl"
    return "jsonl"


# -- shared helpers -------------------------------------------------------------------------


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an epoch number (s or ms) or an ISO-8601 string; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        v = float(value)
        return v / 1000.0 if v > 1e11 else v
    if isinstance(value, str) and value:
        s = value.strip().replace(" ", "T", 1)
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            try:
                return parse_time(float(value))
            except ValueError:
                return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    return None


def _str(v: Any) -> str | None:
    if v is None or v == "":
        return None
    return str(v)


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _json_field(v: Any) -> Any:
    """A JSON column that may arrive parsed or as text."""
    if isinstance(v, str | bytes) and v:
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return None
    return v


# -- OpenAI-format JSONL ---------------------------------------------------------------------


def _json_lines(path: str, bad: BadLines, position: list[int]) -> Iterator[tuple[Any, int]]:
    """Each line's decoded JSON with its line number; blank lines skipped, bad ones counted."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            position[0] += len(raw)
            if not raw.strip():
                continue
            try:
                yield orjson.loads(raw), n
            except orjson.JSONDecodeError as exc:
                bad.add(n, f"not JSON: {exc}")


def read_jsonl(path: str, bad: BadLines, position: list[int] | None = None) -> Iterator[AuditRow | TaskOutcome]:
    position = position if position is not None else [0]
    for obj, n in _json_lines(path, bad, position):
        if not isinstance(obj, dict):
            bad.add(n, "not a JSON object")
            continue
        try:
            item = jsonl_record(obj, n)
        except (TypeError, ValueError, AttributeError) as exc:
            bad.add(n, f"unreadable record: {exc}")
            continue
        if item is None:
            bad.add(n, "no `request` or `response` object")
            continue
        yield item


def jsonl_record(obj: dict[str, Any], line: int) -> AuditRow | TaskOutcome | None:
    """One JSONL object as a row (or a task outcome); None when it carries neither."""
    if "task" in obj and "success" in obj and "request" not in obj:
        return TaskOutcome(str(obj["task"]), bool(obj["success"]), _float(obj.get("score")))
    req = obj.get("request")
    resp = obj.get("response")
    if not isinstance(req, dict) and not isinstance(resp, dict):
        return None
    req = req if isinstance(req, dict) else {}
    resp = resp if isinstance(resp, dict) else {}
    tags = obj.get("tags") if isinstance(obj.get("tags"), dict) else {}
    assert isinstance(tags, dict)
    model = resp.get("model") or req.get("model") or "unknown"
    row = AuditRow(line=line, model=str(model))
    row.ts = parse_time(obj.get("timestamp"))
    if row.ts is None and isinstance(resp.get("created"), int | float):
        row.ts = float(resp["created"])
    row.route = _str(tags.get("route"))
    row.feature = _str(tags.get("feature"))
    row.key = _str(tags.get("key") or obj.get("key"))
    row.task = _str(tags.get("task") or obj.get("task"))
    if req:
        fill_from_request(row, req)
    if resp:
        fill_from_response(row, resp)
    status = obj.get("status")
    if isinstance(status, int) and status >= 400:
        row.error = True
    if obj.get("error"):
        row.error = True
    row.cost = _float(obj.get("cost"))
    row.latency_ms = _float(obj.get("latency_ms"))
    return row


# -- thrifty's ledger ------------------------------------------------------------------------


def _ledger_rows_sqlite(location: str) -> Iterator[tuple[dict[str, Any] | None, int]]:
    path = location.removeprefix("sqlite:///").removeprefix("sqlite://")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        cur = conn.execute("SELECT * FROM requests ORDER BY ts")
        for n, r in enumerate(cur, start=1):
            yield dict(r), n
        try:
            for r in conn.execute("SELECT task, success, score FROM task_outcomes"):
                yield {"__outcome__": True, **dict(r)}, 0
        except sqlite3.OperationalError:
            pass
    finally:
        conn.close()


def _ledger_rows_postgres(location: str) -> Iterator[tuple[dict[str, Any] | None, int]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(location, row_factory=dict_row) as conn:
        with conn.cursor(name="thrifty_audit") as cur:  # server-side: streams
            cur.itersize = 2000
            cur.execute("SELECT * FROM requests ORDER BY ts")
            for n, r in enumerate(cur, start=1):
                yield dict(r), n
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('task_outcomes') AS t")
            found = cur.fetchone()
            if found and found["t"]:
                cur.execute("SELECT task, success, score FROM task_outcomes")
                for r in cur:
                    yield {"__outcome__": True, **dict(r)}, 0


def read_ledger(location: str, bad: BadLines) -> Iterator[AuditRow | TaskOutcome]:
    rows = (
        _ledger_rows_postgres(location)
        if location.startswith(("postgres://", "postgresql://"))
        else _ledger_rows_sqlite(location)
    )
    for r, n in rows:
        if r is None:
            continue
        if r.get("__outcome__"):
            yield TaskOutcome(str(r["task"]), bool(r["success"]), _float(r.get("score")))
            continue
        try:
            yield ledger_record(r, n)
        except (TypeError, ValueError, KeyError) as exc:
            bad.add(n, f"unreadable ledger row {r.get('request_id')!r}: {exc}")


def ledger_record(r: dict[str, Any], n: int) -> AuditRow:
    """A `requests` row (as a column -> value dict) as an AuditRow."""
    row = AuditRow(line=n, model=str(r.get("served_model") or r.get("requested_model") or "unknown"))
    row.ts = float(r["ts"])
    row.route = _str(r.get("route"))
    row.feature = _str(r.get("feature"))
    row.key = _str(r.get("key_name"))
    row.task = _str(r.get("task"))
    row.error = r.get("outcome") == "error" or int(r.get("status") or 0) >= 400
    row.input_tokens = int(r.get("input_tokens") or 0)
    row.cached_tokens = int(r.get("cache_read_tokens") or 0)
    row.output_tokens = int(r.get("output_tokens") or 0)
    row.cost = int(r.get("cost_pico") or 0) / 1e12
    row.latency_ms = _float(r.get("latency_ms"))
    row.finish_reason = _str(r.get("finish_reason"))
    row.cache = _str(r.get("cache"))
    row.answered_by = _str(r.get("answered_by"))
    savings = _json_field(r.get("savings"))
    if isinstance(savings, dict):
        row.savings = {str(k): float(v) for k, v in savings.items() if _float(v) is not None}
    body = _json_field(r.get("request_body"))
    if isinstance(body, dict):
        fill_from_request(row, body, _str(r.get("protocol")) or "openai")
    resp = _json_field(r.get("response_body"))
    if isinstance(resp, dict) and row.finish_reason is None:
        fill_from_response(row, resp)
        row.input_tokens = int(r.get("input_tokens") or row.input_tokens)
        row.output_tokens = int(r.get("output_tokens") or row.output_tokens)
    return row


# -- LiteLLM spend logs ----------------------------------------------------------------------


#: Where the next array element probably starts, to resync after a broken one.
_NEXT_ELEMENT = re.compile(r"\n[ \t]{0,2}\{|\},[ \t]*\{")


def iter_json_array(
    f: IO[str], bad: BadLines, chunk: int = 1 << 16, max_element: int = 16 << 20
) -> Iterator[tuple[Any, int]]:
    """Stream the elements of a top-level JSON array, with the line each one starts on.

    Reads `chunk` characters at a time. An element that is not valid JSON (or is longer than
    `max_element` characters) is reported and skipped to where the next element seems to
    start: a `{` at the start of a line, or after `},`.
    """
    decoder = json.JSONDecoder()
    buf = f.read(chunk)
    pos = 0
    line = 1
    i = buf.find("[")
    if i < 0:
        bad.add(1, "not a JSON array")
        return
    line += buf.count("\n", 0, i + 1)
    pos = i + 1
    eof = False
    while True:
        # skip separators
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n,":
                if buf[pos] == "\n":
                    line += 1
                pos += 1
            if pos < len(buf) or eof:
                break
            more = f.read(chunk)
            eof = not more
            buf, pos = buf[pos:] + more, 0
        if pos >= len(buf) or buf[pos] == "]":
            return
        value: Any = None
        while True:
            try:
                value, end = decoder.raw_decode(buf, pos)
                break
            except json.JSONDecodeError as exc:
                if not eof and len(buf) - pos < max_element:
                    more = f.read(chunk)
                    eof = not more
                    buf, pos = buf[pos:] + more, 0
                    continue
                bad.add(line, f"not JSON: {exc.msg}")
                found = _NEXT_ELEMENT.search(buf, pos + 1)
                if found is None:
                    return
                line += buf.count("\n", pos, found.start() + 1)
                pos = found.start() + 1
                end = -1
                break
        if end < 0:
            continue
        start_line = line
        line += buf.count("\n", pos, end)
        pos = end
        if pos > chunk:
            buf, pos = buf[pos:], 0
        yield value, start_line


def read_litellm(path: str, bad: BadLines, position: list[int] | None = None) -> Iterator[AuditRow | TaskOutcome]:
    position = position if position is not None else [0]
    with open(path, "rb") as fb:
        head = fb.read(4096).lstrip()
    if head.startswith(b"["):
        with open(path, "rb") as binary, io.TextIOWrapper(binary, encoding="utf-8", errors="replace") as f:
            for obj, n in iter_json_array(f, bad):
                position[0] = binary.tell()
                yield from _litellm_item(obj, n, bad)
        return
    for obj, n in _json_lines(path, bad, position):
        yield from _litellm_item(obj, n, bad)


def _litellm_item(obj: Any, n: int, bad: BadLines) -> Iterator[AuditRow]:
    if not isinstance(obj, dict):
        bad.add(n, "not a JSON object")
        return
    try:
        yield litellm_record(obj, n)
    except (TypeError, ValueError, AttributeError) as exc:
        bad.add(n, f"unreadable spend log row: {exc}")


def litellm_record(obj: dict[str, Any], n: int) -> AuditRow:
    """A `LiteLLM_SpendLogs` row as an AuditRow.

    Columns used: request_id, call_type, api_key, spend, prompt_tokens, completion_tokens,
    startTime, endTime, request_duration_ms, model, model_group, user, metadata,
    cache_hit, request_tags, team_id, end_user, messages, response, status, session_id.
    """
    if "model" not in obj and "spend" not in obj:
        raise ValueError("no `model` or `spend` column")
    model = obj.get("model") or obj.get("model_group") or "unknown"
    row = AuditRow(line=n, model=str(model))
    start = parse_time(obj.get("startTime"))
    end = parse_time(obj.get("endTime"))
    row.ts = start
    duration = _float(obj.get("request_duration_ms"))
    if duration is None and start is not None and end is not None:
        duration = (end - start) * 1000.0
    row.latency_ms = duration
    metadata = _json_field(obj.get("metadata"))
    metadata = metadata if isinstance(metadata, dict) else {}
    tags = _json_field(obj.get("request_tags"))
    tag_map: dict[str, str] = {}
    if isinstance(tags, list):
        for t in tags:
            if isinstance(t, str) and ":" in t:
                k, _, v = t.partition(":")
                tag_map[k.strip()] = v.strip()
    row.route = tag_map.get("route") or _str(obj.get("model_group"))
    row.feature = tag_map.get("feature") or (
        str(tags[0]) if isinstance(tags, list) and tags and isinstance(tags[0], str) and ":" not in tags[0] else None
    )
    row.key = _str(metadata.get("user_api_key_alias")) or _str(obj.get("api_key"))
    if row.key and len(row.key) > 24:
        row.key = row.key[:12] + "…"
    row.task = tag_map.get("task") or _str(obj.get("session_id"))
    row.input_tokens = int(_float(obj.get("prompt_tokens")) or 0)
    row.output_tokens = int(_float(obj.get("completion_tokens")) or 0)
    usage = metadata.get("usage_object")
    if isinstance(usage, dict):
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            row.cached_tokens = int(_float(details.get("cached_tokens")) or 0)
    spend = _float(obj.get("spend"))
    row.cost = spend
    status = _str(obj.get("status")) or _str(metadata.get("status"))
    row.error = status in ("failure", "error")
    cache_hit = obj.get("cache_hit")
    if cache_hit in (True, "True", "true"):
        row.cache = "hit"
    messages = _json_field(obj.get("messages"))
    proxy_req = _json_field(obj.get("proxy_server_request"))
    if isinstance(proxy_req, dict) and proxy_req.get("messages"):
        fill_from_request(row, proxy_req)
    elif isinstance(messages, list) and messages:
        fill_from_request(row, {"model": row.model, "messages": messages})
    elif isinstance(messages, str) and messages:
        fill_from_request(row, {"model": row.model, "prompt": messages})
    response = _json_field(obj.get("response"))
    if isinstance(response, dict) and response:
        tokens = (row.input_tokens, row.output_tokens)
        fill_from_response(row, response)
        if any(tokens):
            row.input_tokens, row.output_tokens = tokens
    if row.prompt_text is None and isinstance(messages, dict):
        row.prompt_text = content_text(messages.get("content")) or None
    return row
