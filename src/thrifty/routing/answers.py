"""Reading an answer: its final number, its code, the function it defines and the calls it shows.

A cascade that judges the cheap model's answer needs the answer's substance, not its prose: the
number a maths answer ends on (to compare answers and check the format), the Python a coding
answer contains (to run it against tests, or against the inputs other answers use), and the
example calls an answer shows (they are the inputs on which several answers can be compared
without any test the route supplies).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CodeAnswer",
    "arithmetic_errors",
    "extract_code",
    "final_number",
    "parse_code",
]

_HASHES = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")
_BOXED = re.compile(r"\\boxed\{\s*\$?(-?[\d,]*\.?\d+)")
_ANSWER_IS = re.compile(r"answer(?: is|:)\s*\**\s*\$?\s*(-?[\d,]*\.?\d+)", re.I)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_CALC = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
_EQUATION = re.compile(r"(\d[\d,.]*(?:\s*[-+*/x×]\s*\d[\d,.]*)+)\s*=\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?)")
_FENCED = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_TAGGED = re.compile(r"\[PYTHON\](.*?)(?:\[/PYTHON\]|\Z)", re.S)
_TESTS = re.compile(r"\[TESTS\](.*?)(?:\[/TESTS\]|\Z)", re.S)


def _to_float(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def final_number(text: str) -> float | None:
    """The number an answer ends on: after `####`, in `\\boxed{}`, after "the answer is", else the
    last number in the text; None when there is none."""
    for pattern in (_HASHES, _BOXED):
        hits = pattern.findall(text)
        if hits:
            return _to_float(hits[-1])
    hits = _ANSWER_IS.findall(text)
    if hits:
        return _to_float(hits[-1])
    numbers = _NUMBER.findall(text)
    return _to_float(numbers[-1]) if numbers else None


def _safe_eval(expr: str) -> float | None:
    """Arithmetic on numbers only (+ - * / ** % // and parentheses), or None."""
    try:
        tree = ast.parse(expr.replace("^", "**").replace("×", "*").replace(",", ""), mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            ops: dict[type, Any] = {
                ast.Add: lambda: a + b,
                ast.Sub: lambda: a - b,
                ast.Mult: lambda: a * b,
                ast.Div: lambda: a / b,
                ast.FloorDiv: lambda: a // b,
                ast.Mod: lambda: a % b,
                ast.Pow: lambda: a**b if abs(b) <= 64 else float("nan"),
            }
            if type(node.op) in ops:
                return float(ops[type(node.op)]())
        raise ValueError("not arithmetic")

    try:
        return ev(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def arithmetic_errors(text: str) -> tuple[int, int]:
    """(checked, wrong): the worked calculations an answer states (`<<a*b=c>>` annotations, or
    `a * b = c` in the prose), recomputed. A wrong step is a cheap sign of a wrong answer."""
    checked = wrong = 0
    pairs = _CALC.findall(text) or [
        (e.replace("x", "*"), v) for e, v in _EQUATION.findall(text)
    ]
    for expr, value in pairs:
        got, claimed = _safe_eval(expr), _to_float(value.strip().rstrip("."))
        if got is None or claimed is None:
            continue
        checked += 1
        if abs(got - claimed) > 1e-2 * max(1.0, abs(claimed)):
            wrong += 1
    return checked, wrong


def extract_code(text: str) -> str:
    """The Python of an answer: its fenced (or `[PYTHON]`-tagged) blocks joined, else the whole
    text when it parses as Python, else ""."""
    blocks = [body for lang, body in _FENCED.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    blocks += _TAGGED.findall(text)
    blocks += _TESTS.findall(text)
    if blocks:
        return "\n\n".join(b.strip("\n") for b in blocks)
    try:
        ast.parse(text)
    except SyntaxError:
        return ""
    return text


_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass
class CodeAnswer:
    """What a coding answer defines and the example calls it shows."""

    #: imports, functions and classes (and constant assignments): the code with no side show
    definitions: str
    #: the function the answer is about (the one its examples call, else the last defined)
    entry: str | None
    #: arguments of the example calls to the entry function whose values are literals
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    #: names of the functions defined at top level
    functions: list[str] = field(default_factory=list)


def _parse_blocks(code: str) -> list[ast.stmt]:
    """Statements of `code`; blocks that do not parse on their own are dropped one at a time."""
    try:
        return ast.parse(code).body
    except SyntaxError:
        pass
    out: list[ast.stmt] = []
    for block in re.split(r"\n\s*\n(?=\S)", code):
        try:
            out += ast.parse(block).body
        except SyntaxError:
            continue
    return out


def _literal(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise ValueError(node.id)
    return ast.literal_eval(node)


def parse_code(text: str, max_calls: int = 8) -> CodeAnswer | None:
    """The definitions, entry function and literal example calls of a coding answer, or None."""
    code = extract_code(text)
    if not code.strip():
        return None
    body = _parse_blocks(code)
    defs: list[ast.stmt] = []
    rest: list[ast.stmt] = []
    for node in body:
        if isinstance(node, _KEEP):
            defs.append(node)
        elif (
            isinstance(node, ast.Assign)
            and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
        ):
            defs.append(node)  # module constants the functions may read
        else:
            rest.append(node)
    functions = [n.name for n in defs if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not functions:
        return None
    env: dict[str, Any] = {}
    calls: list[tuple[str, tuple[Any, ...]]] = []
    for node in rest:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                env[node.targets[0].id] = _literal(node.value, env)
            except (ValueError, SyntaxError, TypeError):
                env.pop(node.targets[0].id, None)
        for sub in ast.walk(node):
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Name)
                and sub.func.id in functions
                and not sub.keywords
            ):
                try:
                    args = tuple(_literal(a, env) for a in sub.args)
                except (ValueError, SyntaxError, TypeError):
                    continue
                calls.append((sub.func.id, args))
    called = [name for name, _ in calls]
    entry = max(set(called), key=called.count) if called else _uncalled_last(defs, functions)
    seen: list[tuple[Any, ...]] = []
    for name, args in calls:
        if name == entry and args not in seen and len(seen) < max_calls:
            seen.append(args)
    return CodeAnswer(ast.unparse(ast.Module(body=defs, type_ignores=[])), entry, seen, functions)


def _uncalled_last(defs: list[ast.stmt], functions: list[str]) -> str:
    """The last top-level function that no other function calls (helpers are called)."""
    called: set[str] = set()
    for node in defs:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name):
                called.add(sub.func.id)
    top = [f for f in functions if f not in called]
    return (top or functions)[-1]
