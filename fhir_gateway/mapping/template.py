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
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            value = values.get(whole.group(1))
            return value if _present(value) else MISSING
        parts: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(template):
            value = values.get(match.group(1))
            if not _present(value):
                return MISSING
            parts += [template[position : match.start()], str(value)]
            position = match.end()
        return "".join(parts) + template[position:] if parts else template
    if isinstance(template, dict):
        condition = template.get("$when")
        conditions = condition if isinstance(condition, list) else [] if condition is None else [condition]
        if not all(holds(values, str(c)) for c in conditions):
            return MISSING
        out = {k: v for k, v in ((k, render(v, values)) for k, v in template.items() if k != "$when")}
        out = {k: v for k, v in out.items() if v is not MISSING}
        return out or MISSING
    if isinstance(template, list):
        items = [item for item in (render(t, values) for t in template) if item is not MISSING]
        return items or MISSING
    return template


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
