"""Running coding answers in the sandbox: on each other's example inputs, or against tests.

Two answers that define functions returning the same values on the same inputs very likely
compute the same thing; an answer that disagrees with every other is likely wrong (the idea of
execution-based agreement, as in MBR-exec and CodeT). The inputs are the literal example calls
the answers themselves show, so no test is needed. When the route supplies tests (asserts), an
answer is also run against them: the strongest verifier there is.

All of one prompt's answers run in one sandboxed child process (`thrifty.evals.sandbox`), each
in a namespace of its own, each call under a time limit of its own.
"""

from __future__ import annotations

import ast
import builtins
import json
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from thrifty.evals.sandbox import Limits, run_python
from thrifty.routing.answers import CodeAnswer, parse_code

__all__ = ["Behaviour", "agreement_matrix", "behaviours", "run_tests"]

#: An input whose arity the function does not take: not a disagreement, no evidence.
NA = "N/A"

_RUNNER = r'''
import ast, contextlib, copy, inspect, io, json, math, signal, sys
sys.setrecursionlimit(3000)

class _Late(Exception):
    pass

def _alarm(signum, frame):
    raise _Late()

signal.signal(signal.SIGALRM, _alarm)

def _canon(v, depth=0):
    if depth > 20:
        return "..."
    if isinstance(v, bool) or v is None or isinstance(v, (int, str, bytes)):
        return v
    if isinstance(v, float):
        return v if not math.isfinite(v) else round(v, 6)
    if isinstance(v, complex):
        return [round(v.real, 6), round(v.imag, 6)]
    if isinstance(v, (list, tuple)):
        return [_canon(x, depth + 1) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted((_canon(x, depth + 1) for x in v), key=repr)
    if isinstance(v, dict):
        return sorted(([_canon(k, depth + 1), _canon(x, depth + 1)] for k, x in v.items()), key=repr)
    if inspect.isgenerator(v) or isinstance(v, (map, filter, zip, range)):
        out = []
        for i, x in enumerate(v):
            if i >= 1000:
                break
            out.append(_canon(x, depth + 1))
        return out
    return "<%s>" % type(v).__name__

_PAYLOAD = json.loads(%PAYLOAD%)
_INPUTS = [ast.literal_eval(s) for s in _PAYLOAD["inputs"]]
_results = []
for _ans in _PAYLOAD["answers"]:
    _row = []
    _ns = {"__name__": "answer"}
    try:
        signal.setitimer(signal.ITIMER_REAL, _PAYLOAD["call_s"])
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(_ans["defs"], "answer", "exec"), _ns)
        signal.setitimer(signal.ITIMER_REAL, 0)
        _fn = _ns[_ans["entry"]]
        _sig = inspect.signature(_fn)
    except BaseException as _e:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _results.append(["!load " + type(_e).__name__] * len(_INPUTS))
        continue
    for _args in _INPUTS:
        try:
            _sig.bind(*_args)
        except TypeError:
            _row.append("N/A")
            continue
        try:
            signal.setitimer(signal.ITIMER_REAL, _PAYLOAD["call_s"])
            with contextlib.redirect_stdout(io.StringIO()):
                _v = _fn(*copy.deepcopy(_args))
            signal.setitimer(signal.ITIMER_REAL, 0)
            _row.append(repr(_canon(_v)))
        except BaseException as _e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _row.append("!" + type(_e).__name__)
    _results.append(_row)
sys.stdout.write(json.dumps(_results))
'''


@dataclass
class Behaviour:
    """What one answer's entry function returned on the shared inputs ("!Error", "N/A")."""

    parsed: CodeAnswer | None
    outputs: list[str]

    @property
    def runs(self) -> float:
        """Share of the inputs it takes on which it returned a value."""
        taken = [o for o in self.outputs if o != NA]
        return sum(not o.startswith("!") for o in taken) / len(taken) if taken else 0.0


def _shared_inputs(parsed: Sequence[CodeAnswer | None], limit: int) -> list[tuple[Any, ...]]:
    """The answers' example calls, round-robin so each answer's examples are represented."""
    out: list[tuple[Any, ...]] = []
    reprs: set[str] = set()
    lists = [p.calls if p else [] for p in parsed]
    for depth in range(max((len(c) for c in lists), default=0)):
        for calls in lists:
            if depth < len(calls) and len(out) < limit:
                r = repr(calls[depth])
                if r not in reprs:
                    reprs.add(r)
                    out.append(calls[depth])
    return out


async def behaviours(
    answers: Sequence[str], *, max_inputs: int = 12, call_s: float = 0.5, timeout_s: float = 20.0
) -> list[Behaviour]:
    """Run every answer's entry function on the example inputs of all of them, in one sandbox."""
    parsed = [parse_code(a) for a in answers]
    inputs = _shared_inputs(parsed, max_inputs)
    runnable = [i for i, p in enumerate(parsed) if p is not None and p.entry is not None]
    if not inputs or not runnable:
        return [Behaviour(p, [NA] * len(inputs)) for p in parsed]
    payload = {
        "inputs": [repr(x) for x in inputs],
        "answers": [{"defs": parsed[i].definitions, "entry": parsed[i].entry} for i in runnable],  # type: ignore[union-attr]
        "call_s": call_s,
    }
    source = _RUNNER.replace("%PAYLOAD%", repr(json.dumps(payload)))
    result = await run_python(source, Limits(timeout_s=timeout_s, memory_mb=512, max_output_bytes=1 << 20))
    rows: list[list[str]]
    try:
        rows = json.loads(result.stdout) if result.ok else []
    except ValueError:
        rows = []
    if len(rows) != len(runnable):  # the whole run failed (time or memory): no evidence from it
        rows = [["!sandbox"] * len(inputs) for _ in runnable]
    out = [Behaviour(p, [NA] * len(inputs)) for p in parsed]
    for i, row in zip(runnable, rows, strict=True):
        out[i] = Behaviour(parsed[i], [str(x) for x in row])
    return out


def agreement_matrix(bs: Sequence[Behaviour]) -> list[list[float | None]]:
    """Share of the inputs both take on which two answers return the same value (an error
    counts as a value that never matches); None where they share no input."""
    n = len(bs)
    m: list[list[float | None]] = [[None] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            pairs = [
                (a, b)
                for a, b in zip(bs[i].outputs, bs[j].outputs, strict=False)
                if a != NA and b != NA and not (a.startswith("!") and b.startswith("!"))
            ]
            if pairs:
                m[i][j] = sum(a == b and not a.startswith("!") for a, b in pairs) / len(pairs)
    return m


_CALLED = re.compile(r"\b([A-Za-z_]\w*)\s*\(")


async def run_tests(answer: str, tests: str, *, timeout_s: float = 10.0) -> bool | None:
    """Whether an answer's code passes the route's tests (Python asserts); None if it has no code.

    Tests may name the function differently from the answer (the prompt rarely fixes the name):
    a name the tests call that the answer does not define is bound to the answer's entry function.
    """
    parsed = parse_code(answer)
    if parsed is None or parsed.entry is None:
        return None
    try:
        ast.parse(tests)
    except SyntaxError as exc:
        raise ValueError(f"the route's tests are not Python: {exc}") from None
    known = set(dir(builtins))
    missing = [
        name
        for name in dict.fromkeys(_CALLED.findall(tests))
        if name not in parsed.functions and name not in known and name not in ("assert", "print")
    ]
    alias = "".join(
        f"{name} = {parsed.entry}\n" for name in missing if name.isidentifier() and not keyword.iskeyword(name)
    )
    source = f"{parsed.definitions}\n\n{alias}\n{tests}\n"
    result = await run_python(source, Limits(timeout_s=timeout_s))
    return result.ok
