"""A small reader of the Bicep templates in ``infra/`` for the tests (test_infra.py, test_templates.py).

No Bicep compiler installs from the package registries this project reaches (the Bicep CLI ships from
GitHub and NuGet; the PyPI package ``bicep`` is unrelated, ``bicep-node`` downloads the CLI from
GitHub), so there is no ARM JSON to check. This reader finds the declarations (``param``, ``var``,
``resource``, ``module``, ``output``) and turns literal values into Python data: objects into dicts,
arrays into lists, plain strings (``'...'``, ``'''...'''``), booleans, integers and ``null`` into
their values. Everything else — a reference, a function call, a ternary, an interpolated string, a
``[for ...]`` loop — stays an :class:`Expr` with its source text.

What it cannot see: it evaluates nothing (a condition, a ``union()``, a parameter's value at deploy
time, a module's outputs), knows no resource schema (a misspelt property is just another key), and
parses only the syntax these templates use (strings, comments, brackets, single- and multi-line
objects and arrays, ``if``/``for``/``existing``). It is no Bicep parser; it is strict where it must
be (unbalanced brackets raise) and the tests check that it finds what they look for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CLOSE = {"{": "}", "[": "]", "(": ")"}


class Expr(str):
    """A Bicep expression that is not a literal, as its source text (e.g. ``storage.id``)."""

    __slots__ = ()


def _skip(text: str, i: int, closing: str) -> int:
    """Index of ``closing`` that ends the construct whose body starts at ``i``, skipping strings (with
    nested ``${...}``), multi-line strings, comments and balanced brackets on the way."""
    stack = [closing]
    while i < len(text):
        c = text[i]
        if stack[-1] == "'":  # inside a string
            if c == "\\":
                i += 2
                continue
            if c == "'":
                stack.pop()
                if not stack:
                    return i
            elif text.startswith("${", i):
                stack.append("}")
                i += 2
                continue
        elif text.startswith("'''", i):  # multi-line string: no escapes, no interpolation
            end = text.find("'''", i + 3)
            if end < 0:
                raise ValueError(f"unterminated ''' string at offset {i}")
            i = end + 3
            continue
        elif text.startswith("//", i):
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
            continue
        elif c == "'":
            stack.append("'")
        elif c in _CLOSE:
            stack.append(_CLOSE[c])
        elif c in "}])":
            if c != stack.pop():
                raise ValueError(f"unbalanced {c!r} at offset {i}")
            if not stack:
                return i
        i += 1
    raise ValueError(f"no closing {closing!r}")


def _block(text: str, start: int) -> str:
    """The text between the bracket at ``start`` and its match."""
    return text[start + 1 : _skip(text, start + 1, _CLOSE[text[start]])]


def _value_end(text: str, i: int) -> int:
    """End of the expression that starts at ``i``: the end of its line or a comma, outside brackets
    and strings (which may span lines)."""
    while i < len(text) and text[i] not in "\n,":
        if text[i] in _CLOSE:
            i = _skip(text, i + 1, _CLOSE[text[i]])
        elif text.startswith("'''", i):
            i = text.index("'''", i + 3) + 2
        elif text[i] == "'":
            i = _skip(text, i + 1, "'")
        elif text.startswith("//", i):
            break
        i += 1
    return i


def _entries(body: str) -> dict[str, str]:
    """The ``key: value`` entries at the top level of an object body (values as source text)."""
    out: dict[str, str] = {}
    key_re = re.compile(r"[\s,]*('(?:[^'\\]|\\.)*'|[A-Za-z_][A-Za-z0-9_]*)\s*:\s*")
    i = 0
    while i < len(body):
        m = key_re.match(body, i)
        if m is None:  # a blank line, a comment, the rest of a line
            nl = body.find("\n", i + 1)
            i = len(body) if nl < 0 else nl
            continue
        end = _value_end(body, m.end())
        out[m.group(1).strip("'")] = body[m.end() : end].strip()
        i = end
    return out


def _items(body: str) -> list[str]:
    """The items at the top level of an array body (newline- or comma-separated), as source text."""
    out: list[str] = []
    i = 0
    while i < len(body):
        while i < len(body) and body[i] in " \t\r\n,":
            i += 1
        if i >= len(body):
            break
        if body.startswith("//", i):
            nl = body.find("\n", i)
            i = len(body) if nl < 0 else nl
            continue
        end = _value_end(body, i)
        item = body[i:end].strip()
        if item:
            out.append(item)
        i = end
    return out


def value(source: str) -> Any:
    """The Python value of a Bicep literal; an :class:`Expr` for anything that is not one."""
    s = source.strip()
    if s[:1] in ("{", "[") and _skip(s, 1, _CLOSE[s[0]]) == len(s) - 1:
        inner = s[1:-1]
        if s[0] == "{":
            return {k: value(v) for k, v in _entries(inner).items()}
        if re.match(r"\s*for\b", inner):
            return Expr(s)
        return [value(item) for item in _items(inner)]
    if s.startswith("'''") and s.endswith("'''") and len(s) >= 6:
        return s[3:-3]
    if s.startswith("'") and len(s) > 1 and _skip(s, 1, "'") == len(s) - 1:
        body = s[1:-1]
        if re.search(r"(?<!\\)\$\{", body):
            return Expr(s)
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), body)
    if s in ("true", "false"):
        return s == "true"
    if s == "null":
        return None
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    return Expr(s)


def strings(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every single-quoted string literal outside comments and multi-line strings."""
    i = 0
    while i < len(text):
        if text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                return
        elif text.startswith("'''", i):
            i = text.index("'''", i + 3) + 2
        elif text[i] == "'":
            end = _skip(text, i + 1, "'")
            yield i, end
            i = end
        i += 1


@dataclass
class Param:
    name: str
    type: str
    default: str | None
    decorators: str


@dataclass
class Resource:
    symbol: str
    type: str
    body: dict[str, str]  # top-level entries as source text
    api_version: str = ""
    existing: bool = False
    condition: str | None = None  # the expression of `= if (...)`
    loop: tuple[str, Any] | None = None  # `[for NAME in ITERABLE: ...]`: (NAME, ITERABLE as a value)

    @property
    def value(self) -> dict[str, Any]:
        """The body as Python data (literals as values, everything else as :class:`Expr`)."""
        return {k: value(v) for k, v in self.body.items()}


@dataclass
class Template:
    text: str
    params: dict[str, Param] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    modules: dict[str, dict[str, str]] = field(default_factory=dict)
    module_decls: dict[str, Resource] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)

    def var_object(self, name: str) -> dict[str, str]:
        value = self.variables[name]
        assert value.startswith("{"), f"var {name} is not an object literal"
        return _entries(value[1:-1])

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type.lower() == type_.lower()]


_DECL = re.compile(
    r"^(param|var|resource|module|output) (\w+)(?: ('[^']*'|\w+))?( existing)?\s*=\s*(?:if \((.*)\) )?",
    re.MULTILINE,
)
_PARAM = re.compile(r"^param (\w+) (\w+)(?: = (.*))?$", re.MULTILINE)
_LOOP = re.compile(r"\[\s*for\s+(\w+|\([^)]*\))\s+in\s+")


def parse(text: str) -> Template:
    t = Template(text)
    for m in _PARAM.finditer(text):
        before = text[: m.start()].rstrip("\n").split("\n\n")[-1]
        t.params[m.group(1)] = Param(m.group(1), m.group(2), m.group(3), before)
    for m in _DECL.finditer(text):
        kind, symbol, type_ = m.group(1), m.group(2), (m.group(3) or "").strip("'")
        rest = m.end()
        if kind == "output":
            t.outputs.add(symbol)
        elif kind == "var":
            t.variables[symbol] = text[rest : _value_end(text, rest)].strip()
        elif kind in ("resource", "module"):
            loop = None
            lm = _LOOP.match(text, rest)
            if lm is not None:
                start = lm.end()
                end = (
                    _value_end(text, start) if text[start] not in _CLOSE else _skip(text, start + 1, "]") + 1
                )
                loop = (lm.group(1), value(text[start:end]))
                rest = end
            brace = text.index("{", rest)
            body = _entries(_block(text, brace))
            type_name, _, api = type_.partition("@")
            decl = Resource(symbol, type_name, body, api, bool(m.group(4)), m.group(5), loop)
            if kind == "resource":
                t.resources[symbol] = decl
            else:
                t.modules[symbol] = body | {"path": type_}
                t.module_decls[symbol] = decl
    return t


def read(path: Path) -> Template:
    return parse(path.read_text(encoding="utf-8"))


def literal(source: str) -> str:
    assert source.startswith("'") and source.endswith("'"), f"{source} is not a string literal"
    return source[1:-1]


def bicepparam(text: str) -> tuple[str, dict[str, str]]:
    """The ``using`` path and the ``param NAME = VALUE`` entries (values as source text) of a
    ``.bicepparam`` file."""
    using = re.search(r"^using '([^']+)'", text, re.MULTILINE)
    assert using is not None, "a .bicepparam file starts with using '<template>'"
    params: dict[str, str] = {}
    for m in re.finditer(r"^param (\w+)\s*=\s*", text, re.MULTILINE):
        params[m.group(1)] = text[m.end() : _value_end(text, m.end())].strip()
    return using.group(1), params
