"""Reference rewriting inside a transaction (FHIR R4 bundle.html#references, http.html#trules).

``urn:uuid:`` / ``urn:oid:`` fullUrls get server ids before processing; every
``reference`` naming them is rewritten. Conditional references (``Patient?identifier=...``)
are resolved by search inside the transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def rewrite_references(node: Any, mapping: dict[str, str], resolve: Callable[[str], str | None]) -> None:
    """Rewrite ``reference`` values in place: placeholders via ``mapping``, ``Type?query`` via ``resolve``."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "reference" and isinstance(value, str):
                    if value in mapping:
                        item[key] = mapping[value]
                    elif "?" in value and not value.startswith(("http://", "https://", "urn:")):
                        resolved = resolve(value)
                        if resolved is not None:
                            item[key] = resolved
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))
