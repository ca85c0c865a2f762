"""Resource templates of a model (DESIGN.md, Mapping): JSON with ``{name}`` placeholders.

- a string that is exactly ``{name}`` takes the value with its type (number, boolean);
  a string with placeholders inside is interpolated;
- a placeholder whose value is absent removes the element; an object or list left empty
  is removed too (an empty cell means "absent", partner-formats "Common rules");
- an object with ``$when: name`` (or ``$when: "!name"``, or a list of them) is kept only
  when ``name`` is present (absent);
- merging into a stored resource keeps its id and meta, the listed ``preserve`` elements
  (changed since by their owner) and, for ``merge`` lists, the items of other keys.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


class _Missing:
    pass


MISSING: Any = _Missing()


def _present(value: Any) -> bool:
    return value is not None and value != "" and value is not MISSING


def holds(values: dict[str, Any], condition: str) -> bool:
    """``name`` is present, or ``!name`` is absent."""
    if condition.startswith("!"):
        return not _present(values.get(condition[1:]))
    return _present(values.get(condition))


def render(template: Any, values: dict[str, Any]) -> Any:
    """``template`` with placeholders replaced from ``values`` (MISSING when nothing is left)."""
    if not isinstance(template, dict | list):
        return compile_template(template)(values)
    key = id(template)
    found = _compiled.get(key)
    if found is None or found[0] is not template:
        found = (template, compile_template(template))
        if len(_compiled) >= 1024:
            _compiled.clear()
        _compiled[key] = found
    return found[1](values)


Renderer = Callable[[dict[str, Any]], Any]
_compiled: dict[int, tuple[Any, Renderer]] = {}


def compile_template(template: Any) -> Renderer:
    """A function rendering ``template`` (the rules above), built once per template."""
    if isinstance(template, str):
        return _compile_text(template)
    if isinstance(template, dict):
        condition = template.get("$when")
        conditions = [
            str(c)
            for c in (condition if isinstance(condition, list) else [] if condition is None else [condition])
        ]
        items = [(k, compile_template(v)) for k, v in template.items() if k != "$when"]

        def render_object(values: dict[str, Any]) -> Any:
            for c in conditions:
                if not holds(values, c):
                    return MISSING
            out = {}
            for k, fn in items:
                v = fn(values)
                if v is not MISSING:
                    out[k] = v
            return out or MISSING

        return render_object
    if isinstance(template, list):
        parts = [compile_template(t) for t in template]

        def render_list(values: dict[str, Any]) -> Any:
            out = []
            for fn in parts:
                v = fn(values)
                if v is not MISSING:
                    out.append(v)
            return out or MISSING

        return render_list
    return lambda _values: template


def _compile_text(template: str) -> Renderer:
    whole = _PLACEHOLDER.fullmatch(template)
    if whole:
        name = whole.group(1)

        def render_value(values: dict[str, Any]) -> Any:
            value = values.get(name)
            if value is None or value is MISSING or value == "":
                return MISSING
            return value

        return render_value
    pieces = _PLACEHOLDER.split(template)  # literal, name, literal, name, ..., literal
    if len(pieces) == 1:
        return lambda _values: template

    def render_text(values: dict[str, Any]) -> Any:
        parts: list[str] = []
        for index, piece in enumerate(pieces):
            if index % 2:
                value = values.get(piece)
                if not _present(value):
                    return MISSING
                parts.append(str(value))
            else:
                parts.append(piece)
        return "".join(parts)

    return render_text


def query_escape(value: Any) -> str:
    """A search parameter value (FHIR R4 search.html#escaping), URL-encoded."""
    text = str(value).replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$").replace("|", "\\|")
    return quote(text, safe="")


def render_query(template: str, values: dict[str, Any]) -> str | None:
    """A search query with escaped values; None when a placeholder is absent."""
    out: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        value = values.get(match.group(1))
        if not _present(value):
            return None
        out += [template[position : match.start()], query_escape(value)]
        position = match.end()
    return "".join(out) + template[position:]


def _key(item: Any, paths: list[str]) -> tuple[Any, ...]:
    def walk(node: Any, path: str) -> Any:
        for step in path.split("."):
            if isinstance(node, list):
                node = node[0] if node else None
            node = node.get(step) if isinstance(node, dict) else None
        return node

    return tuple(walk(item, p) for p in paths)


def merge_list(old: list[Any], new: list[Any], paths: list[str]) -> list[Any]:
    """``old`` with each item of ``new`` replacing the one of the same key, or appended."""
    result = list(old)
    for item in new:
        key = _key(item, paths)
        for index, existing in enumerate(result):
            if _key(existing, paths) == key:
                result[index] = item
                break
        else:
            result.append(item)
    return result


def merge(
    stored: dict[str, Any],
    rendered: dict[str, Any],
    *,
    mode: str,
    lists: dict[str, list[str]],
    preserve: list[str],
) -> dict[str, Any]:
    """The new content of a stored resource (``mode``: ``replace`` or ``patch``)."""
    kept = ("id", "meta")
    base: dict[str, Any] = (
        copy.deepcopy(stored) if mode == "patch" else {k: stored[k] for k in kept if k in stored}
    )
    base.update(copy.deepcopy(rendered))
    for name, paths in lists.items():
        if name in stored or name in rendered:
            base[name] = merge_list(stored.get(name) or [], rendered.get(name) or [], paths)
    for name in preserve:
        if name in stored:
            base[name] = copy.deepcopy(stored[name])
    return base


def _at(node: Any, path: str) -> Any:
    for step in path.split("."):
        node = node.get(step) if isinstance(node, dict) else None
    return node


def _put(node: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for step in parents:
        node = node.setdefault(step, {})
    node[last] = value


def fill_default(
    merged: dict[str, Any],
    rendered: dict[str, Any],
    stored: dict[str, Any] | None,
    rule: dict[str, Any],
    values: dict[str, Any],
    keys: list[str],
) -> bool:
    """Complete the items of list ``rule['list']`` the row gave without ``rule['path']``: with
    the stored item of the same key (``keys``) when it has the element, so that a re-import
    changes nothing, else with ``rule['value']`` rendered. True when the default was used."""
    name, path = str(rule["list"]), str(rule["path"])
    stored_items = (stored or {}).get(name) or []
    used = False
    for item in rendered.get(name) or []:
        if _at(item, path) is not None:
            continue
        key = _key(item, keys)
        target = next((m for m in merged.get(name) or [] if _key(m, keys) == key), None)
        if target is None:
            continue
        kept = next((_at(s, path) for s in stored_items if _key(s, keys) == key), None)
        if kept is not None:
            _put(target, path, copy.deepcopy(kept))
            continue
        default = render(rule["value"], values)
        if default is not MISSING:
            _put(target, path, default)
            used = True
    return used
