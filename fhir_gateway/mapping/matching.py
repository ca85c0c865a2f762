"""Business identifiers of a chunk of rows found in one query (issue 5, throughput).

A row's resources are found again by search queries (``match``). Those that are exactly
``param=system|code`` on a token parameter (FHIR R4 search.html#token), the business
identifiers, are answered for a whole chunk of rows at once, through the caller's
visibility filter like any search (``fhir.conditional.find_token_matches``). The answers are
kept up to date with the import's own writes (a created or changed resource enters or leaves
the answers its index rows say), so a later row of the chunk finds what an earlier one wrote;
queries of any other kind are left to the per-row search.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

from fhir_gateway.fhir.conditional import TokenQuery, find_token_matches, token_query
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.mapping.template import holds, render_query
from fhir_gateway.search.indexing import Rows
from fhir_gateway.search.registry import param as search_param
from fhir_gateway.storage.repository import StoredRow

Group = tuple[str, str, str]  # resource type, parameter, system
_PART = r"(\{[A-Za-z_][A-Za-z0-9_.]*\}|[^{}|&,$\\%=?+\s]*)"
_TOKEN_TEMPLATE = re.compile(rf"([A-Za-z_][A-Za-z0-9_-]*)={_PART}\|{_PART}")
_SPECIAL = re.compile(r"[\\,$|]")


@cache
def _token_template(res_type: str, template: str) -> tuple[str, str, str] | None:
    """(parameter, system part, code part) of a ``param={a}|{b}`` template on a token parameter."""
    found = _TOKEN_TEMPLATE.fullmatch(template)
    if found is None:
        return None
    definition = search_param(res_type, found.group(1))
    if definition is None or definition.type != "token":
        return None
    return definition.code, found.group(2), found.group(3)


class MatchQuery:
    """One ``match`` query of a row: its text (rendered when needed) and, when it is a business
    identifier, its TokenQuery."""

    __slots__ = ("res_type", "template", "values", "token", "_text")

    def __init__(
        self, res_type: str, template: str, values: dict[str, Any], token: TokenQuery | None
    ) -> None:
        self.res_type = res_type
        self.template = template
        self.values = values
        self.token = token
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = render_query(self.template, self.values) or ""
        return self._text


def _part(part: str, values: dict[str, Any]) -> str | None:
    if not part.startswith("{"):
        return part
    value = values.get(part[1:-1])
    return None if value is None or value == "" else str(value)


Entry = tuple[str | None, str, tuple[str, str, str] | None]  # when, template, token shape
_entries_of: dict[int, tuple[dict[str, Any], tuple[Entry, ...]]] = {}
# Queries seen lately as TokenQuery or None (a file's rows ask the same few queries again).
_token_query = lru_cache(maxsize=4096)(token_query)


def _entries(step: dict[str, Any]) -> tuple[Entry, ...]:
    """The step's ``match`` entries with their token shapes, worked out once per step."""
    found = _entries_of.get(id(step))
    if found is None or found[0] is not step:
        res_type = str(step["type"])
        entries = []
        for entry in step.get("match") or []:
            spec = entry if isinstance(entry, dict) else {"query": entry}
            template = str(spec["query"])
            when = str(spec["when"]) if "when" in spec else None
            entries.append((when, template, _token_template(res_type, template)))
        if len(_entries_of) >= 1024:
            _entries_of.clear()
        found = _entries_of[id(step)] = (step, tuple(entries))
    return found[1]


_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def query_names(step: dict[str, Any]) -> frozenset[str]:
    """The row values the step's match queries read (placeholders and ``when`` conditions)."""
    names: set[str] = set()
    for when, template, _shape in _entries(step):
        names.update(_NAME.findall(template))
        if when is not None:
            names.add(when.lstrip("!"))
    return frozenset(names)


def match_queries(step: dict[str, Any], values: dict[str, Any]) -> list[MatchQuery]:
    """The step's match queries that apply to a row with ``values`` and can be rendered."""
    res_type = str(step["type"])
    out: list[MatchQuery] = []
    for when, template, shape in _entries(step):
        if when is not None and not holds(values, when):
            continue
        if shape is not None:
            system, code = _part(shape[1], values), _part(shape[2], values)
            if system is None or code is None:
                continue  # an absent value: the query does not apply
            if system and not _SPECIAL.search(system) and not _SPECIAL.search(code):
                out.append(
                    MatchQuery(res_type, template, values, TokenQuery(res_type, shape[0], system, code))
                )
                continue
        query = MatchQuery(res_type, template, values, None)
        if query.text:
            query.token = _token_query(res_type, query.text)
            out.append(query)
    return out


class ChunkMatches:
    """Known answers of the business-identifier queries of the current chunk."""

    def __init__(self) -> None:
        self._wanted: dict[Group, tuple[set[str], bool]] = {}
        self._answers: dict[TokenQuery, list[StoredRow]] = {}
        self._of_resource: dict[tuple[str, str], set[TokenQuery]] = {}

    def clear(self) -> None:
        self._wanted.clear()
        self._answers.clear()
        self._of_resource.clear()

    def want(self, query: TokenQuery, *, for_update: bool) -> None:
        """Note a query a row of the chunk will ask (``for_update``: its target gets written)."""
        group = (query.res_type, query.param, query.system)
        codes, locking = self._wanted.get(group, (set(), False))
        codes.add(query.code)
        self._wanted[group] = (codes, locking or for_update)

    def fetch(self, ctx: Ctx) -> None:
        """Answer every wanted query: one search per resource type, parameter and system."""
        for (res_type, param, system), (codes, for_update) in self._wanted.items():
            answers = find_token_matches(ctx, res_type, param, system, sorted(codes), for_update=for_update)
            for code, rows in answers.items():
                query = TokenQuery(res_type, param, system, code)
                self._answers[query] = rows
                for row in rows:
                    self._of_resource.setdefault((res_type, row.res_id), set()).add(query)
        self._wanted.clear()

    def answer(self, query: TokenQuery | None) -> list[StoredRow] | None:
        """The rows matching ``query`` when known (None: ask the database)."""
        return None if query is None else self._answers.get(query)

    def wrote(self, row: StoredRow, index: Rows) -> None:
        """``row`` was written with these index rows: it now answers what its tokens match."""
        key = (row.res_type, row.res_id)
        for query in self._of_resource.pop(key, set()):
            self._answers[query] = [r for r in self._answers[query] if r.res_id != row.res_id]
        mine: set[TokenQuery] = set()
        for token in index.get("token", []):
            if token.get("system") is None or token.get("code") is None:
                continue
            query = TokenQuery(row.res_type, token["param"], token["system"], token["code"])
            if query in self._answers and query not in mine:
                self._answers[query].append(row)
                mine.add(query)
        if mine:
            self._of_resource[key] = mine
