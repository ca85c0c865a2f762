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

from fhir_gateway.fhir.conditional import TokenQuery, find_token_matches, token_query
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.search.indexing import Rows
from fhir_gateway.storage.repository import StoredRow

Group = tuple[str, str, str]  # resource type, parameter, system


class ChunkMatches:
    """Known answers of the business-identifier queries of the current chunk."""

    def __init__(self) -> None:
        self._queries: dict[tuple[str, str], TokenQuery | None] = {}
        self._wanted: dict[Group, tuple[set[str], bool]] = {}
        self._answers: dict[TokenQuery, list[StoredRow]] = {}
        self._of_resource: dict[tuple[str, str], set[TokenQuery]] = {}

    def clear(self) -> None:
        self._queries.clear()
        self._wanted.clear()
        self._answers.clear()
        self._of_resource.clear()

    def want(self, res_type: str, query: str, *, for_update: bool) -> None:
        """Note a query a row of the chunk will ask (``for_update``: its target gets written)."""
        key = (res_type, query)
        if key not in self._queries:
            self._queries[key] = token_query(res_type, query)
        found = self._queries[key]
        if found is None:
            return
        group = (found.res_type, found.param, found.system)
        codes, locking = self._wanted.get(group, (set(), False))
        codes.add(found.code)
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

    def answer(self, res_type: str, query: str) -> list[StoredRow] | None:
        """The rows matching ``query`` when known (None: ask the database)."""
        found = self._queries.get((res_type, query))
        return None if found is None else self._answers.get(found)

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
