"""Business-identifier queries answered per chunk give the answers of the per-row search
(mapping/matching.py)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_gateway.fhir.conditional import token_query
from fhir_gateway.mapping.matching import match_queries
from fhir_gateway.mapping.template import render_query

VALUES: list[dict[str, Any]] = [
    {"sys": "urn:fhir-gateway:saad-42:intervention", "id": "INT-1"},
    {"sys": "urn:oid:1.2.250.1.213.1.4.8", "id": "1 85 05 78 006 084 91"},
    {"sys": "urn:x", "id": "a,b|c$d\\e"},
    {"sys": "urn:x", "id": "plus+and%25"},
    {"sys": "urn:x", "id": 42},
    {"sys": "", "id": "x"},
    {"sys": "urn:x", "id": ""},
    {"sys": "urn:x"},
]
TEMPLATES = [
    "identifier={sys}|{id}",
    "identifier=urn:literal:system|{id}",
    "identifier=urn:a+b|{id}",
    "subject={id}&status=active",
    "_id={id}",
]


@pytest.mark.parametrize("values", VALUES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_same_token_as_the_search_parser(template: str, values: dict[str, Any]) -> None:
    step = {"type": "Task", "match": [template]}
    found = match_queries(step, values)
    rendered = render_query(template, values)
    if rendered is None:
        assert found == []
        return
    expected = token_query("Task", rendered)
    assert len(found) == 1
    assert found[0].token == expected
    assert found[0].text == rendered
