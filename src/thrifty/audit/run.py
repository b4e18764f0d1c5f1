"""Audit a log end to end: read it as a stream, analyse it, return the `Audit`."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from thrifty.audit.pricing import RateBook
from thrifty.audit.sources import Format, LogSource
from thrifty.audit.waste import Analyzer, Audit, AuditSettings


def audit_log(
    location: str,
    fmt: Format = "auto",
    settings: AuditSettings | None = None,
    rates: RateBook | None = None,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    progress: bool = True,
) -> Audit:
    """Audit the log at `location` (file path or postgresql:// URL) in one streaming pass.

    `progress` draws a tqdm bar on stderr (bytes read for files, rows for databases).
    """
    source = LogSource(location, fmt)
    analyzer = Analyzer(settings, rates, embed)
    size = source.size_hint() if source.format != "ledger" else None
    bar = tqdm(
        total=size or (source.row_count() if progress else None),
        unit="B" if size else " rows",
        unit_scale=True,
        desc=f"audit {source.format}",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    )
    done = 0
    with bar:
        for i, item in enumerate(source, start=1):
            analyzer.add(item)
            if i % 2000 == 0:
                now = source.position[0] if size else i
                bar.update(now - done)
                done = now
        bar.update((source.position[0] if size else analyzer.n) - done)
    return analyzer.finish(location, source.format, source.bad)
