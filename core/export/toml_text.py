"""A small TOML writer for flat config files (tables, arrays of tables, scalars, arrays).

The trainers' configs need nothing more, and writing them here keeps a dependency out; the tests read
every file back with the standard library's tomllib."""
from __future__ import annotations

import json
import math


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ValueError(f"TOML has no portable spelling for {v}")
        return repr(v)
    if isinstance(v, str):
        # json's string escapes are valid TOML basic-string escapes (\", \\, \n, \uXXXX).
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _scalars(table: dict, comments: dict) -> list[str]:
    lines = []
    for k, v in table.items():
        if v is None or isinstance(v, dict) or (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)):
            continue
        if k in comments:
            lines.append(f"# {comments[k]}")
        lines.append(f"{_key(k)} = {value(v)}")
    return lines


def dumps(doc: dict, comments: dict | None = None, header: str = "") -> str:
    """``doc``: top-level scalars, then sub-tables (dict) and arrays of tables (list of dict), one level
    of nesting below each (enough for kohya's [[datasets]] / [[datasets.subsets]]). ``None`` values are
    left out. ``comments``: key -> a comment line written above that top-level key."""
    comments = comments or {}
    out = [f"# {line}" if line else "#" for line in header.splitlines()]
    out += _scalars(doc, comments)

    def emit(name: str, v):
        if isinstance(v, dict):
            out.append("")
            out.append(f"[{name}]")
            out.extend(_scalars(v, {}))
            for k, sub in v.items():
                if isinstance(sub, (dict, list)) and _is_table(sub):
                    emit(f"{name}.{_key(k)}", sub)
        elif isinstance(v, list):
            for item in v:
                out.append("")
                out.append(f"[[{name}]]")
                out.extend(_scalars(item, {}))
                for k, sub in item.items():
                    if _is_table(sub):
                        emit(f"{name}.{_key(k)}", sub)

    for k, v in doc.items():
        if _is_table(v):
            emit(_key(k), v)
    return "\n".join(out).lstrip("\n") + "\n"


def _is_table(v) -> bool:
    return isinstance(v, dict) or (isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v))
