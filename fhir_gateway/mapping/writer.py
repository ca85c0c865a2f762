"""One parsed row -> resources, written through the service layer (DESIGN.md, Mapping).

The model lists the row's resources in order. Each is found again by its business
identifiers (``match``: search queries tried in turn, through the caller's consent filter;
those of a whole chunk of rows answered together, ``mapping.matching``) and then created or
updated through ``fhir.write_batch``, the REST write path in batches, so scopes, validation,
consent, history, search index, subscriptions and audit apply as for the REST API. Writing
identical content creates no version: re-importing a file changes nothing. ``lookup``
resources must already exist (or are optional) and only bind values (FHIRPath, cached per
resource version) for the next templates; their answers are kept for the run until a
resource of that type is written.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from fhir_gateway.fhir import background_flush
from fhir_gateway.fhir.conditional import Group, find_matches, find_reference_matches, reference_group
from fhir_gateway.fhir.context import Ctx
from fhir_gateway.fhir.write_batch import WriteBatch
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.errors import FhirError
from fhir_gateway.mapping.fhirpath import first_value
from fhir_gateway.mapping.matching import ChunkMatches, MatchQuery, match_queries, query_names
from fhir_gateway.mapping.report import Problem, Summary
from fhir_gateway.mapping.rows import ParsedRow
from fhir_gateway.mapping.spec import Format
from fhir_gateway.mapping.template import MISSING, fill_default, holds, merge, render
from fhir_gateway.search.model import Value
from fhir_gateway.storage.locks import lock_for_transaction
from fhir_gateway.storage.repository import StoredRow


class RowFailed(Exception):
    """The row cannot be written; ``problem`` says why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.text())
        self.problem = problem


class LookupCache:
    """Answers of lookup searches for one run, per type, bounded (memory flat in file size)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._types: dict[str, OrderedDict[str, StoredRow | None]] = {}

    def knows(self, res_type: str, query: str) -> bool:
        return query in self._types.get(res_type, {})

    def get(self, res_type: str, query: str) -> StoredRow | None:
        return self._types[res_type][query]

    def put(self, res_type: str, query: str, row: StoredRow | None) -> None:
        entries = self._types.setdefault(res_type, OrderedDict())
        entries[query] = row
        if len(entries) > self.size:
            entries.popitem(last=False)

    def forget(self, res_type: str) -> None:
        """A resource of ``res_type`` is being written: its lookups may change."""
        self._types.pop(res_type, None)

    def clear(self) -> None:
        self._types.clear()


@dataclass
class Outcome:
    """What a row's writes did."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    notes: list[Problem] = field(default_factory=list)

    def add_to(self, summary: Summary) -> None:
        summary.created += self.created
        summary.updated += self.updated
        summary.unchanged += self.unchanged
        summary.add(self.notes)


class RowWriter:
    """Writes the resources of rows of one format for one caller, in batches (``prefetch`` the
    business identifiers of a chunk of rows, ``write`` each row, ``flush``)."""

    def __init__(self, ctx: Ctx, fmt: Format) -> None:
        self.ctx = ctx
        self.fmt = fmt
        self.steps: list[dict[str, Any]] = list(fmt.model.get("resources") or [])
        self.cache = LookupCache()
        self.known = ChunkMatches()
        self.batch = WriteBatch(ctx)
        self._bound: OrderedDict[tuple[str, str, int, str], dict[str, Any]] = OrderedDict()
        bound = {f"ref.{s['name']}" for s in self.steps if "name" in s}
        bound.update(name for s in self.steps for name in s.get("bind") or {})
        # steps whose queries read no value a step binds: the same for a row all along
        self._stable = {id(s) for s in self.steps if query_names(s).isdisjoint(bound)}

    def _queries(self, row: ParsedRow, step: dict[str, Any], values: dict[str, Any]) -> list[MatchQuery]:
        """``match_queries`` of ``step`` for ``row`` (with ``values``), worked out once per row
        for the steps whose queries read no bound value."""
        if id(step) not in self._stable:
            return match_queries(step, values)
        found: list[MatchQuery] | None = row.queries.get(id(step))
        if found is None:
            found = row.queries[id(step)] = match_queries(step, row.values)
        return found

    def prefetch(self, rows: list[ParsedRow], written: object = None) -> None:
        """Find the resources the business identifiers of ``rows`` name, one query per
        resource type, parameter and system (queries needing an earlier step's result are
        left to the row).

        With a background flush (``fhir.background_flush``), the previous chunk's writes are
        not stored yet: the answers found are completed with them (as a chunk's own writes
        complete its answers), the lookups that could need them store them first
        (``WriteBatch.flush_for``), and they are stored while this chunk's rows are built
        (``written``: what they are, for ``BackgroundFlushFailed``)."""
        if self.batch.background is None:
            self.flush()
        else:
            self.batch.settle()
        self.known.clear()
        for step in self.steps:
            for_update = step.get("action") != "lookup"
            for row in rows:
                if "when" not in step or holds(row.values, str(step["when"])):
                    for query in self._queries(row, step, row.values):
                        if query.token is not None:
                            self.known.want(query.token, for_update=for_update)
        self.known.fetch(self.ctx)
        for pending in self.batch.pending:
            self.known.wrote(pending.result.row, pending.index.rows)
        self._prefetch_lookups(rows)
        self.batch.flush_later(written)

    def _prefetch_lookups(self, rows: list[ParsedRow]) -> None:
        """Answer the chunk's lookups that search by a reference (``subject={ref.patient}&...``:
        the person's CareTeam) with one query per kind of search (``find_reference_matches``)
        into the lookup cache. Each row's lookup steps are followed through the answers known
        so far; the first search whose answer is unknown is asked, later ones are left to the
        row (they may depend on it)."""
        texts: dict[str, set[str]] = {}
        for row in rows:
            values = row.values
            for step in self.steps:
                if step.get("action") != "lookup":
                    continue
                if "when" in step and not holds(values, str(step["when"])):
                    continue
                found = self._known_lookup(row, step, values)
                if isinstance(found, str):
                    texts.setdefault(step["type"], set()).add(found)
                if not isinstance(found, StoredRow):
                    break
                if values is row.values:
                    values = dict(values)  # the row's values are bound by ``write`` itself
                values[f"ref.{step['name']}"] = f"{found.res_type}/{found.res_id}"
        for res_type, wanted in texts.items():
            groups: dict[Group, dict[str, Value]] = {}
            for text in wanted:
                shaped = reference_group(res_type, text)
                if shaped is not None:
                    groups.setdefault(shaped[0], {})[text] = shaped[1]
            for group, values_of in groups.items():
                # the search may need writes not stored yet: a group's texts share their parameters
                self.batch.flush_for(res_type, next(iter(values_of)))
                for text, matches in find_reference_matches(self.ctx, group, values_of).items():
                    if len(matches) <= 1:  # several: the row reports it
                        self.cache.put(res_type, text, matches[0] if matches else None)

    def _known_lookup(
        self, row: ParsedRow, step: dict[str, Any], values: dict[str, Any]
    ) -> StoredRow | str | None:
        """What ``_find`` would answer for a lookup from the answers known so far: the row, the
        text of the first search it would have to ask, or None (no match, or several)."""
        res_type = step["type"]
        for match in self._queries(row, step, values):
            known = self.known.answer(match.token)
            if known is not None:
                if len(known) > 1:
                    return None
                if known:
                    return known[0]
                continue
            text = match.text
            if self.cache.knows(res_type, text):
                cached = self.cache.get(res_type, text)
                if cached is not None:
                    return cached
                continue
            return text
        return None

    def flush(self) -> None:
        """Store the pending writes (FhirError, BackgroundFlushFailed: the caller rolls back)."""
        self.batch.flush()

    def store_in_background(self) -> None:
        """Store each chunk's writes while the next chunk's rows are built, when the
        connection's driver allows (``fhir.background_flush``); ``close`` ends it."""
        if background_flush.available(self.ctx.conn):
            self.batch.background = background_flush.BackgroundFlush(self.ctx)

    def close(self) -> None:
        """Stop the background flush, if any (what it had under way is forgotten unless
        ``flush`` settled it)."""
        background, self.batch.background = self.batch.background, None
        if background is not None:
            background.close()

    def forget(self) -> None:
        """After a rolled-back row: pending writes and known answers may be wrong."""
        self.batch.discard()
        self.cache.clear()
        self.known.clear()

    def lock_run(self) -> None:
        """Imports run one at a time (a lock held until the import's transaction ends), so that
        two files naming the same person never create it twice.

        Not one lock per business identifier: a transaction of 100,000 rows would exhaust
        PostgreSQL's lock table (advisory locks count against ``max_locks_per_transaction``).
        """
        lock_for_transaction(self.ctx.conn, "$import-partner")  # plans: storage.database.bulk_transaction

    def _fail(self, row: ParsedRow, field: str | None, reason: str) -> RowFailed:
        header = self.fmt.header_of(field) if field else ""
        return RowFailed(Problem(row.line, header, row.cells.get(header, "") if header else "", reason))

    def _find(self, row: ParsedRow, step: dict[str, Any], *, for_write: bool) -> StoredRow | None:
        """The stored resource matching the step's first applicable query (``for_write``: never
        from the lookup cache)."""
        res_type = step["type"]
        for match in self._queries(row, step, row.values):
            known = self.known.answer(match.token)
            if known is not None:
                if len(known) > 1:
                    raise self._fail(
                        row, step.get("field"), f"{res_type}?{match.text} matches several resources"
                    )
                if known:
                    return known[0]
                continue
            query = match.text
            if not for_write and self.cache.knows(res_type, query):
                found = self.cache.get(res_type, query)
                if found is not None:
                    return found
                continue
            self.batch.flush_for(res_type, query)
            matches = find_matches(self.ctx, res_type, query)
            if len(matches) > 1:
                raise self._fail(row, step.get("field"), f"{res_type}?{query} matches several resources")
            if not for_write:
                self.cache.put(res_type, query, matches[0] if matches else None)
            if matches:
                return matches[0]
        return None

    def write(self, row: ParsedRow) -> Outcome:
        """Write the row's resources; RowFailed names the problem."""
        outcome = Outcome()
        for step in self.steps:
            if "when" in step and not holds(row.values, str(step["when"])):
                continue
            try:
                if step.get("action") == "lookup":
                    self._lookup(row, step)
                else:
                    self._upsert(row, step, outcome)
            except FhirError as exc:
                raise self._fail(row, step.get("field"), f"{step['type']}: {exc.diagnostics}") from None
        return outcome

    def _bind(self, row: ParsedRow, step: dict[str, Any], found: StoredRow) -> None:
        row.values[f"ref.{step['name']}"] = f"{found.res_type}/{found.res_id}"
        if step.get("bind") and found.content is not None:
            key = (found.res_type, found.res_id, found.version, step["name"])
            bound = self._bound.get(key)
            if bound is None:
                content = jsonutil.loads(found.content)
                bound = {name: first_value(content, expr) for name, expr in step["bind"].items()}
                self._bound[key] = bound
                if len(self._bound) > 10_000:
                    self._bound.popitem(last=False)
            row.values.update(bound)

    def _lookup(self, row: ParsedRow, step: dict[str, Any]) -> None:
        found = self._find(row, step, for_write=False)
        if found is not None:
            self._bind(row, step, found)
        elif step.get("required", True):
            raise self._fail(row, step.get("field"), step.get("missing", f"no {step['type']} found"))

    def _upsert(self, row: ParsedRow, step: dict[str, Any], outcome: Outcome) -> None:
        res_type = step["type"]
        rendered = render(step["template"], row.values)
        body: dict[str, Any] = {"resourceType": res_type, **({} if rendered is MISSING else rendered)}
        found = self._find(row, step, for_write=True)
        self.cache.forget(res_type)
        stored = jsonutil.loads(found.content) if found is not None and found.content is not None else None
        merged = body
        if stored is not None:
            merged = merge(
                stored,
                body,
                mode=step.get("mode", "replace"),
                lists=step.get("merge") or {},
                preserve=step.get("preserve") or [],
            )
        self._defaults(row, step, merged, body, stored, outcome)
        if found is not None and stored is not None:
            result, index = self.batch.update(res_type, found.res_id, merged, found)
            if index is None:
                outcome.unchanged += 1
            else:
                outcome.updated += 1
        else:
            result, index = self.batch.create(res_type, merged)  # no match, and imports run one at a time
            outcome.created += 1
        if index is not None:
            self.known.wrote(result.row, index)
        self._bind(row, step, result.row)

    def _defaults(
        self,
        row: ParsedRow,
        step: dict[str, Any],
        merged: dict[str, Any],
        rendered: dict[str, Any],
        stored: dict[str, Any] | None,
        outcome: Outcome,
    ) -> None:
        """The step's ``defaults``: list item elements the file may leave out (kept from the
        stored item, else a default value noted as an information issue of the row)."""
        for rule in step.get("defaults") or []:
            keys = (step.get("merge") or {}).get(rule["list"]) or []
            if fill_default(merged, rendered, stored, rule, row.values, keys):
                header = self.fmt.header_of(rule["field"]) if rule.get("field") else ""
                note = str(rule.get("note") or f"{rule['list']}.{rule['path']} absent; default used")
                outcome.notes.append(Problem(row.line, header, "", note, severity="information"))
