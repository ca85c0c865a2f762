"""Every extension the partner mappings write is defined in profiles/ (FHIR R4
extensibility.html#Extension, structuredefinition.html): a StructureDefinition of type
Extension with that canonical URL, the value type the mapping writes and, as context,
the element the mapping puts it on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fhir_gateway.mapping.importer import organization_constants
from fhir_gateway.mapping.template import render
from fhir_gateway.validation.registry import registry

MODELS = Path(__file__).resolve().parents[2] / "mappings" / "_models"
_VALUE_TYPES = {"valueCode": "code", "valueString": "string", "valueInteger": "integer"}
_VALUE_TYPES |= {"valueDecimal": "decimal", "valueDate": "date"}


def _extensions(node: Any, path: str, constants: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(url, value type, element path) of the extensions a template writes."""
    found: list[tuple[str, str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "extension":
                for item in value:
                    url = render(item["url"], constants)
                    kind = next(k for k in item if k.startswith("value"))
                    found.append((url, _VALUE_TYPES[kind], path))
            elif not key.startswith("$"):
                found += _extensions(value, f"{path}.{key}", constants)
    elif isinstance(node, list):
        for item in node:
            found += _extensions(item, path, constants)
    return found


def _written() -> list[tuple[str, str, str]]:
    out = []
    for file in sorted(MODELS.glob("*.yaml")):
        model = yaml.safe_load(file.read_text(encoding="utf-8"))
        constants = organization_constants("Organization/x")
        constants |= {k: render(v, constants) for k, v in (model.get("constants") or {}).items()}
        for step in model.get("resources") or []:
            if "template" in step:
                out += _extensions(step["template"], step["type"], constants)
    return out


def test_every_extension_written_has_its_definition() -> None:
    written = _written()
    assert len({url for url, _, _ in written}) >= 8
    definitions = registry().resources["StructureDefinition"]
    for url, value_type, element in written:
        sd = definitions.get(url)
        assert sd is not None, f"no StructureDefinition for {url}"
        assert (sd["type"], sd["kind"], sd["derivation"]) == ("Extension", "complex-type", "constraint")
        assert [c["expression"] for c in sd["context"]] == [element], url
        elements = {e["path"]: e for e in sd["differential"]["element"]}
        assert elements["Extension.url"]["fixedUri"] == url
        assert [t["code"] for t in elements["Extension.value[x]"]["type"]] == [value_type], url
