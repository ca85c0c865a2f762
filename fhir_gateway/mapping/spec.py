"""Loading a partner format from ``mappings/<format>/`` (DESIGN.md, Mapping).

``format.yaml`` holds the dialect (encoding, separator, line ending, date, time and
decimal formats) and the columns (header, canonical field, type, required, ConceptMap,
checks). ``model:`` names the FHIR side in ``mappings/_models/<model>.yaml`` (row ->
resources, business identifiers, export paths), shared by dialects of the same meaning:
a new vendor dialect is a new folder, no Python. ConceptMaps are ``*.conceptmap.json``
files of the format folder (or of ``_models``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from fhir_gateway.mapping.concepts import ValueMap

TYPES = frozenset({"string", "date", "time", "decimal", "integer", "code"})


class SpecError(ValueError):
    """A format definition is wrong (a deployment error, not a data error)."""


@dataclass(frozen=True)
class Dialect:
    """How a format writes values (partner-formats/README.md, "Common rules")."""

    encodings: tuple[str, ...] = ("utf-8", "windows-1252")
    export_encoding: str = "utf-8"
    delimiter: str = ";"
    newline: str = "\r\n"
    date: str = "%d/%m/%Y"
    time: str = "%H:%M"
    decimal: str = ","
    timezone: str = "Europe/Paris"


@dataclass(frozen=True)
class Column:
    """One column: header text, canonical field and how to read its cells."""

    header: str
    field: str
    type: str = "string"
    required: bool = False
    value_map: ValueMap | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    check: str | None = None
    length: int | None = None
    import_only: bool = False
    export_only: bool = False


@dataclass
class Format:
    """A partner format: dialect, columns and its model (the FHIR side)."""

    name: str
    directions: tuple[str, ...]
    dialect: Dialect
    columns: list[Column]
    model: dict[str, Any]
    constants: dict[str, str] = field(default_factory=dict)

    def column_for(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.field == name), None)

    def header_of(self, name: str) -> str:
        column = self.column_for(name)
        return column.header if column else name


def mappings_root(configured: str = "") -> Path:
    """``FHIR_GATEWAY_MAPPINGS_DIR``, else the project's ``mappings/`` folder."""
    if configured:
        return Path(configured)
    here = Path(__file__).resolve().parents[2] / "mappings"
    return here if here.is_dir() else Path.cwd() / "mappings"


def available(root: Path) -> list[str]:
    """The format names found under ``root``."""
    return sorted(p.parent.name for p in root.glob("*/format.yaml") if not p.parent.name.startswith("_"))


def _load_yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    return data


def _value_maps(folders: list[Path]) -> dict[str, ValueMap]:
    maps: dict[str, ValueMap] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.conceptmap.json")):
            name = path.name.removesuffix(".conceptmap.json")
            maps[name] = ValueMap.from_conceptmap(name, json.loads(path.read_text(encoding="utf-8")))
    return maps


def _column(raw: dict[str, Any], maps: dict[str, ValueMap]) -> Column:
    kind = raw.get("type", "string")
    if kind not in TYPES:
        raise SpecError(f"column {raw.get('header')!r}: unknown type {kind!r}")
    value_map = None
    if "map" in raw:
        if raw["map"] not in maps:
            raise SpecError(f"column {raw['header']!r}: no ConceptMap {raw['map']!r}")
        value_map = maps[raw["map"]]
    elif "values" in raw:
        value_map = ValueMap.from_values(str(raw["field"]), [str(v) for v in raw["values"]])
    return Column(
        header=str(raw["header"]),
        field=str(raw["field"]),
        type="code" if value_map is not None else kind,
        required=bool(raw.get("required", False)),
        value_map=value_map,
        minimum=raw.get("min"),
        maximum=raw.get("max"),
        pattern=raw.get("pattern"),
        check=raw.get("check"),
        length=raw.get("length"),
        import_only=bool(raw.get("import_only", False)),
        export_only=bool(raw.get("export_only", False)),
    )


@cache
def load_format(root: Path, name: str) -> Format:
    """The format ``name`` under ``root`` (cached; formats are read-only data)."""
    folder = root / name
    if name.startswith("_") or not (folder / "format.yaml").is_file():
        raise KeyError(name)
    raw = _load_yaml(folder / "format.yaml")
    model_name = raw.get("model")
    model = _load_yaml(root / "_models" / f"{model_name}.yaml") if model_name else {}
    maps = _value_maps([root / "_models", folder])
    options: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in (raw.get("dialect") or {}).items()
    }
    dialect = Dialect(**options)
    columns = [_column(c, maps) for c in raw.get("columns") or []]
    constants = {**(model.get("constants") or {}), **(raw.get("constants") or {})}
    return Format(name, tuple(raw.get("directions") or ("import",)), dialect, columns, model, constants)
