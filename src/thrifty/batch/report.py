"""The report of a job: lines, who answered them, where they ran, what failed, what it cost,
and what the same lines would have cost sent one by one at list price."""

from __future__ import annotations

from collections import Counter
from typing import Any

from thrifty.ledger.record import from_pico

__all__ = ["job_report", "render_report"]


def job_report(job: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    states = Counter(line["state"] for line in lines)
    answered = Counter(line["answered_by"] for line in lines if line["state"] == "done")
    where = Counter(line["executed_where"] for line in lines if line["state"] == "done")
    reasons = Counter(line["error"] for line in lines if line["state"] in ("failed", "cancelled"))
    cost = sum(line["cost_pico"] for line in lines)
    listed = sum(line["list_pico"] for line in lines)
    return {
        "id": job["id"],
        "status": job["status"],
        "target": job["target"],
        "lines": len(lines),
        "succeeded": states.get("done", 0),
        "failed": states.get("failed", 0),
        "cancelled": states.get("cancelled", 0),
        "open": states.get("pending", 0) + states.get("leased", 0),
        "from_cache": answered.get("cache", 0) + answered.get("semantic_cache", 0),
        "from_exact_cache": answered.get("cache", 0),
        "from_semantic_cache": answered.get("semantic_cache", 0),
        "deduplicated": answered.get("dedup", 0),
        "executed": dict(sorted(where.items())),
        "failures": [{"custom_id": line["custom_id"], "status": line["status"], "reason": line["error"]}
                     for line in lines if line["state"] == "failed"][:50],
        "failure_reasons": dict(reasons.most_common(10)),
        "cost": str(from_pico(cost)),
        "cost_pico": cost,
        "interactive_list_cost": str(from_pico(listed)),
        "interactive_list_cost_pico": listed,
        "saved": str(from_pico(listed - cost)),
        "cached_custom_ids": [line["custom_id"] for line in lines
                              if line["answered_by"] in ("cache", "semantic_cache")][:1000],
    }


def render_report(r: dict[str, Any]) -> str:
    executed = ", ".join(f"{k}: {v}" for k, v in r["executed"].items()) or "-"
    out = [
        f"batch {r['id']}  {r['status']}  (target {r['target']})",
        f"  lines          {r['lines']}  (succeeded {r['succeeded']}, failed {r['failed']}, cancelled {r['cancelled']})",
        f"  from cache     {r['from_cache']}  (exact {r['from_exact_cache']}, semantic {r['from_semantic_cache']})",
        f"  deduplicated   {r['deduplicated']}",
        f"  answered where {executed}",
        f"  cost           ${r['cost']}",
        f"  interactive    ${r['interactive_list_cost']}  (the same lines one by one at list price)",
        f"  saved          ${r['saved']}",
    ]
    for reason, n in r["failure_reasons"].items():
        out.append(f"  failure x{n}: {reason}")
    return "\n".join(out)
