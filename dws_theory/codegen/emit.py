"""Source printing: a small library of line builders that keep emitted code ruff-stable.

Every builder returns lines that fit `LINE_LENGTH` or explodes them the way `ruff format`
would (one item per line with a magic trailing comma), so the printed modules pass
`ruff format --check` unchanged. Nothing here knows about weight spaces.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from ..orbits import Pattern

__all__ = [
    "LINE_LENGTH",
    "assignment",
    "call",
    "comment",
    "dims_text",
    "fits",
    "index",
    "patterns_comment",
    "permutation",
    "rows_lines",
    "statement",
    "string_lines",
    "tuple_literal",
    "unpack",
    "wrap_dims",
    "wrapped",
]

LINE_LENGTH = 100


def fits(text: str) -> bool:
    return len(text) <= LINE_LENGTH


def comment(indent: int, items: Sequence[str], head: str = "", sep: str = "; ") -> list[str]:
    """A comment of `head` then `items`, wrapped at spaces but never inside an item."""
    glue = "\x00"  # stands for a space that must not break
    pad = " " * indent
    room = LINE_LENGTH - indent - 4  # an item longer than a line may break at its spaces
    text = head + sep.join(item if len(item) > room else item.replace(" ", glue) for item in items)
    lines = textwrap.wrap(
        text,
        width=LINE_LENGTH,
        initial_indent=pad + "# ",
        subsequent_indent=pad + "#   ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace(glue, " ") for line in lines]


def patterns_comment(indent: int, head: str, patterns: Sequence[Pattern]) -> list[str]:
    return comment(indent, [str(p) for p in patterns], head)


def call(indent: int, target: str, func: str, args: Sequence[str | list[str]]) -> list[str]:
    """`target = func(args)` on one line when it fits, else exploded with trailing commas.

    A list argument is a tuple literal. Magic trailing commas keep the exploded form stable
    under `ruff format`.
    """
    pad = " " * indent

    def flat(arg: str | list[str]) -> str:
        if isinstance(arg, list):
            return "(" + ", ".join(arg) + ("," if len(arg) == 1 else "") + ")"
        return arg

    lead = f"{pad}{target} = " if target else pad
    line = f"{lead}{func}({', '.join(flat(a) for a in args)})"
    if fits(line):
        return [line]
    lines = [f"{lead}{func}("]
    inner = " " * (indent + 4)
    for arg in args:
        one = f"{inner}{flat(arg)},"
        if fits(one) or not isinstance(arg, list):
            lines.append(one)
        else:
            lines.append(f"{inner}(")
            lines += [f"{inner}    {a}," for a in arg]
            lines.append(f"{inner}),")
    lines.append(f"{pad})")
    return lines


def tuple_literal(items: Sequence[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def string_lines(lead: str, text: str) -> list[str]:
    """`lead"text"`, split into implicitly concatenated pieces when too long."""
    line = f'{lead}"{text}"'
    if fits(line):
        return [line]
    pieces = textwrap.wrap(text, width=LINE_LENGTH - 8, drop_whitespace=False)
    return [f"{lead}("] + [f'    "{p}"' for p in pieces] + [")"]


def index(pattern: Sequence[bool]) -> str:
    """Indexing `[:, :, None, :]` that inserts None after batch and channel where False."""
    items = [":", ":"] + [":" if keep else "None" for keep in pattern]
    while items and items[-1] == ":":
        items.pop()
    return f"[{', '.join(items)}]" if items else ""


def permutation(src: Sequence[str], dst: Sequence[str], offset: int) -> str:
    """`.transpose(i, j)` / `.permute(...)` taking axes ordered as `src` to `dst`."""
    if list(src) == list(dst):
        return ""
    perm = [list(src).index(a) for a in dst]
    moved = [i for i, j in enumerate(perm) if i != j]
    if len(moved) == 2:
        return f".transpose({moved[0] + offset}, {moved[1] + offset})"
    dims = list(range(offset)) + [i + offset for i in perm]
    return f".permute({', '.join(map(str, dims))})"


def rows_lines(
    name: str, rows: Sequence[str], one_line: bool = False, indent: int = 0
) -> list[str]:
    """A tuple assignment: on one line when it fits (always tried for 0 or 1 rows), else one
    row per line with a magic trailing comma."""
    pad = " " * indent
    one_line = one_line or len(rows) <= 1 or name == "DIMS"
    if one_line and fits(f"{pad}{name} = {tuple_literal(rows)}"):
        return [f"{pad}{name} = {tuple_literal(rows)}"]
    lines = [f"{pad}{name} = ("]
    for r in rows:
        if fits(f"{pad}    {r},") or not (r.startswith("(") and r.endswith(")")):
            lines.append(f"{pad}    {r},")
        else:  # a row too long for a line: one item per line, as ruff format does
            lines += [f"{pad}    ("] + [f"{pad}        {i}," for i in _top_level_items(r[1:-1])]
            lines.append(f"{pad}    ),")
    return lines + [f"{pad})"]


def unpack(indent: int, names: Sequence[str], source: str) -> list[str]:
    """`a, b = source` (nothing when there are no names: the shape check covers an empty list)."""
    if not names:
        return []
    pad = " " * indent
    line = f"{pad}{', '.join(names)} = {source}"
    if len(names) == 1:
        line = f"{pad}({names[0]},) = {source}"
    if fits(line):
        return [line]
    return [f"{pad}("] + [f"{pad}    {n}," for n in names] + [f"{pad}) = {source}"]


def statement(indent: int, target: str, pieces: Sequence[str], plus: str = "") -> list[str]:
    """`target = [plus + ]pieces...`, split into chained statements when a line is too long."""
    pad = " " * indent
    lead = f"{pad}{target} = {plus + ' + ' if plus else ''}"
    if fits(lead + "".join(pieces)):
        return [lead + "".join(pieces)]
    # Build the term in a temporary first, one piece group per line.
    lines, line = [], f"{pad}term = {pieces[0]}"
    for piece in pieces[1:]:
        if fits(line + piece):
            line += piece
        else:
            lines.append(line)
            line = f"{pad}term = term{piece}"
    lines.append(line)
    lines.append(f"{lead}term")
    return lines


def dims_text(dims: Sequence[int]) -> str:
    return ",".join(str(d) for d in dims)


def wrap_dims(prefix: str, dims: Sequence[int], suffix: str = "", cont: str = "") -> list[str]:
    """`prefix` + widths + `suffix`, broken after commas when longer than a line."""
    items = [f"{d}," for d in dims[:-1]] + [f"{dims[-1]}{suffix}"]
    lines, line = [], prefix
    for item in items:
        if not fits(line + item) and line.strip() not in ("", prefix.strip()):
            lines.append(line)
            line = cont
        line += item
    return lines + [line]


def _trailing_bracket(expr: str) -> int | None:
    """Index of the opening bracket that the expression's last character closes, if the
    expression ends with a bracket (and that bracket is not the whole expression)."""
    if not expr or expr[-1] not in ")]":
        return None
    depth = 0
    for i in range(len(expr) - 1, -1, -1):
        ch = expr[i]
        if ch in ")]":
            depth += 1
        elif ch in "([":
            depth -= 1
            if depth == 0:
                return i if i > 0 else None
    return None


def _top_level_items(text: str) -> list[str]:
    """`text` split at its top-level commas (not inside brackets or string literals)."""
    items, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    if tail:
        items.append(tail)
    return items


def _method_chain(expr: str) -> list[str]:
    """`a.f(x).g(y)` -> [`a`, `.f(x)`, `.g(y)`]; anything else -> [expr]."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "." and depth == 0 and i > start and not expr[i - 1].isdigit():
            pieces.append(expr[start:i])
            start = i
    pieces.append(expr[start:])
    base, links = pieces[0], pieces[1:]
    if not base.isidentifier() or not all(link.endswith(")") for link in links):
        return [expr]
    return [base, *links]


def assignment(indent: int, target: str, expr: str) -> list[str]:
    """`target = expr`, split the way `ruff format` splits a long right-hand side: inside
    its trailing bracket (the arguments of the last call) on their own line, or one per line
    with a magic trailing comma when even that is too long; an expression that does not end
    with a bracket is wrapped in parentheses."""
    pad = " " * indent
    line = f"{pad}{target} = {expr}"
    if fits(line):
        return [line]
    inner = pad + "    "
    opening = _trailing_bracket(expr)
    if opening is None:
        return [f"{pad}{target} = (", f"{inner}{expr}", f"{pad})"]
    head, body, close = expr[: opening + 1], expr[opening + 1 : -1], expr[-1]
    chain = _method_chain(expr)
    if not fits(f"{pad}{target} = {head}") and len(chain) > 2:
        # `a.f(x).g(y)` as `target = a.f(x)` then `target = target.g(y)`: the calls are pure.
        lines = assignment(indent, target, chain[0] + chain[1])
        for link in chain[2:]:
            lines += assignment(indent, target, target + link)
        return lines
    if fits(f"{inner}{body}") and not body.rstrip().endswith(","):
        return [f"{pad}{target} = {head}", f"{inner}{body}", f"{pad}{close}"]
    items = _top_level_items(body)
    return [f"{pad}{target} = {head}"] + [f"{inner}{item}," for item in items] + [f"{pad}{close}"]


def wrapped(lines: Sequence[str]) -> list[str]:
    """The lines with every assignment that is too long split by `assignment`."""
    out: list[str] = []
    for line in lines:
        stripped = line.lstrip()
        if fits(line) or stripped.startswith("#") or " = " not in stripped:
            out.append(line)
            continue
        target, expr = stripped.split(" = ", 1)
        out += assignment(len(line) - len(stripped), target, expr)
    return out
