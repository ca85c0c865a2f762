"""A search's shape: its SQL structure, with every value the client sent replaced by a slot.

Two searches that differ only in their values (``Task?patient=Patient/1&status=requested``
and ``...Patient/2...``) have the same shape, so they can run the same SQL statement with
other bound values (``storage.search_statements`` builds each statement once per shape and
kind of caller). Building a statement and its cache key cost about a third of a search's
CPU; executing a ready one costs nothing of the kind.

Every decision the SQL depends on (modifier, prefix, whether a system or a type is given...)
is taken here and written into the shape; the SQL builder (``search.compiler``) only reads
shapes and slots, never a value, so a statement built for one search is right for every
search of the same shape by construction. FHIR R4 search.html defines the semantics; the
value transformations (case folding, LIKE patterns, number precision) are those of
search.html#string, #token, #number, #date, #reference and #uri.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fhir_gateway.search.indexing import normalize
from fhir_gateway.search.model import Criterion, Has, SearchRequest, Value

Shape = tuple[Any, ...]  # nested tuples of str, bool, None, Slot: hashable


class Slot:
    """The place of one bound value: parameter ``q<index>`` of the statement.

    One object per index (``Slot(3) is Slot(3)``): shapes are compared and hashed at every
    search (the statement cache's key), and identity makes that the interpreter's work instead
    of a generated ``__eq__``/``__hash__`` per slot."""

    __slots__ = ("index", "name")
    _made: dict[int, Slot] = {}  # noqa: RUF012 - the one Slot of each index
    index: int
    name: str

    def __new__(cls, index: int) -> Slot:
        found = cls._made.get(index)
        if found is None:
            found = super().__new__(cls)
            found.index, found.name = index, f"q{index}"
            found = cls._made.setdefault(index, found)
        return found

    def __setattr__(self, name: str, value: object) -> None:
        if hasattr(self, name):
            raise AttributeError(f"Slot.{name} cannot change")
        super().__setattr__(name, value)

    def __reduce__(self) -> tuple[type[Slot], tuple[int]]:
        return (Slot, (self.index,))  # copies and pickles are the same one Slot

    def __repr__(self) -> str:
        return f"Slot({self.index})"


NULL = "null"  # a condition on SQL NULL (``IS NULL``), not a bound value


class Literals:
    """The values of one search, in slot order."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def slot(self, value: Any) -> Slot:
        self.values.append(value)
        return Slot(len(self.values) - 1)

    def params(self) -> dict[str, Any]:
        """The statement's bound parameters."""
        return {f"q{i}": value for i, value in enumerate(self.values)}


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _token(v: Value, modifier: str | None, lit: Literals) -> Shape:
    if modifier == "text":
        return ("text", lit.slot(f"%{like_escape(v.raw)}%"))
    code = lit.slot(v.code) if v.code is not None else None
    system: Slot | str | None = None
    if v.system == "":
        system = NULL
    elif v.system is not None:
        system = lit.slot(v.system)
    return ("token", code, system)


def _string(v: Value, modifier: str | None, lit: Literals) -> Shape:
    text = v.code or ""
    if modifier == "exact":
        return ("exact", lit.slot(text[:255]))
    pattern = like_escape(normalize(text))
    if modifier == "contains":
        return ("like", lit.slot(f"%{pattern}%"))
    return ("like", lit.slot(f"{pattern}%"))


def _unit(raw: str) -> float:
    """The precision implied by a number's decimals (search.html#number)."""
    text = raw.lstrip("eqnglstab").split("|")[0]
    if "e" in text.lower():
        return 1e-9
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(10**-decimals)


_NUMBER_COMPARISONS = {"gt": ">", "lt": "<", "ge": ">=", "le": "<=", "sa": ">", "eb": "<"}


def _number(v: Value, lit: Literals) -> Shape:
    n = v.number
    assert n is not None
    if v.prefix in ("eq", "ne"):
        half = 0.5 * _unit(v.raw)
        test: Shape = ("between", v.prefix == "ne", lit.slot(n - half), lit.slot(n + half))
    elif v.prefix == "ap":
        test = ("between", False, lit.slot(n - abs(n) * 0.1), lit.slot(n + abs(n) * 0.1))
    else:
        test = ("compare", _NUMBER_COMPARISONS[v.prefix], lit.slot(n))
    system = lit.slot(v.system) if v.system is not None else None
    code = lit.slot(v.code) if v.code is not None else None
    return ("number", test, system, code)


def _reference(v: Value, lit: Literals) -> Shape:
    target_id = lit.slot(v.target_id) if v.target_id is not None else NULL
    target_type = lit.slot(v.target_type) if v.target_type else None
    url = lit.slot(v.code) if v.code and "://" in v.code else None
    return ("reference", target_id, target_type, url)


def _uri(v: Value, modifier: str | None, lit: Literals) -> Shape:
    if modifier == "below":
        return ("like", lit.slot(f"{like_escape(v.code or '')}%"))
    return ("uri", lit.slot(v.code) if v.code is not None else NULL)


def value_shape(kind: str, v: Value, modifier: str | None, lit: Literals) -> Shape:
    """One OR-ed value of a parameter of type ``kind``."""
    if kind == "token":
        return _token(v, modifier, lit)
    if kind == "string":
        return _string(v, modifier, lit)
    if kind == "date":
        return ("date", v.prefix, lit.slot(v.low), lit.slot(v.high))
    if kind in ("number", "quantity"):
        return _number(v, lit)
    if kind == "reference":
        return _reference(v, lit)
    return _uri(v, modifier, lit)


def criterion_shape(c: Criterion, lit: Literals) -> Shape:
    """One criterion: on which index table and parameter, and how it matches."""
    head = (c.param.type, c.param.code)
    if c.chain is not None:
        return ("chain", head, c.chain.target_type, criterion_shape(c.chain.criterion, lit))
    if c.missing is not None:
        return ("missing", head, c.missing)
    if c.param.code == "_lastUpdated":
        values = tuple(_last_updated(v, lit) for v in c.values)
    else:
        values = tuple(value_shape(c.param.type, v, c.modifier, lit) for v in c.values)
    return ("values", head, c.modifier == "not", values)


_MS = timedelta(milliseconds=1)
_LAST_US = timedelta(microseconds=999)


def _last_updated(v: Value, lit: Literals) -> Shape:
    """A ``_lastUpdated`` value, compared with the row's ``last_updated`` column.

    ``meta.lastUpdated`` is that column cut to milliseconds (``kit.timeutil.fhir_instant``):
    the value's range is narrowed to whole milliseconds (low rounded up, high to the last
    microsecond of its millisecond), so that the column, compared with it, matches exactly when
    the millisecond instant the resource shows would (search.html#date)."""
    assert v.low is not None
    assert v.high is not None
    low = v.low if v.low.microsecond % 1000 == 0 else _ceil_ms(v.low)
    high = v.high.replace(microsecond=v.high.microsecond // 1000 * 1000) + _LAST_US
    return ("date", v.prefix, lit.slot(low), lit.slot(high))


def _ceil_ms(moment: datetime) -> datetime:
    try:
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000) + _MS
    except OverflowError:  # within the last millisecond of year 9999: nothing is after it
        return datetime.max


def has_shape(h: Has, lit: Literals) -> Shape:
    """``_has``: which resources point here, through which parameter, matching what."""
    criterion = criterion_shape(h.criterion, lit) if h.criterion is not None else None
    nested = has_shape(h.nested, lit) if h.nested is not None else None
    return (h.source_type, h.reference_param, criterion, nested)


# (type, parameter) whose reference is the resource's patient compartment (indexing.py: the
# element of a single Patient reference that ``patient_id`` is taken from): a search on it by
# Patient/<id> matches exactly the rows of ``patient_id IN (<ids>)``.
_COMPARTMENT_PARAMS = frozenset(
    {
        ("Task", "patient"),
        ("Task", "subject"),
        ("CarePlan", "patient"),
        ("CarePlan", "subject"),
        ("CareTeam", "patient"),
        ("CareTeam", "subject"),
        ("Goal", "patient"),
        ("Goal", "subject"),
        ("ServiceRequest", "patient"),
        ("ServiceRequest", "subject"),
        ("Consent", "patient"),
        ("RelatedPerson", "patient"),
    }
)


def compartment_ids(res_type: str, c: Criterion) -> list[str] | None:
    """The persons ``c`` restricts the search to, when that is all it does (the rows of
    ``patient_id IN (<ids>)`` exactly: ``where_shape`` adds that condition, or lets it stand for
    ``c``), else None."""
    if (res_type, c.param.code) not in _COMPARTMENT_PARAMS or c.modifier or c.chain or c.missing is not None:
        return None
    ids = []
    for v in c.values:
        if v.target_type != "Patient" or not v.target_id or "://" in v.raw:
            return None
        ids.append(v.target_id)
    return ids or None


@dataclass(frozen=True, slots=True)
class WhereShape:
    """The conditions of a search on its resource type (all AND-ed)."""

    res_type: str
    ids: tuple[Slot, ...]  # each holds a list of ids (``_id=a,b``)
    criteria: tuple[Shape, ...]
    compartments: tuple[Slot, ...]  # each holds a list of person ids (a person's reference criterion)
    has: tuple[Shape, ...]
    # the one person every row belongs to (a single compartment criterion of one id): its id
    person: Slot | None = None
    # the person's reference criteria are left to ``compartments`` and the other criteria are
    # tested on each of the person's rows (``search.compiler``): when there are other criteria
    per_row: bool = False


def where_shape(request: SearchRequest, lit: Literals) -> WhereShape:
    """The shape of ``request``'s conditions, its values put in ``lit``."""
    t = request.resource_type
    ids = tuple(lit.slot(list(group)) for group in request.ids)
    persons = [compartment_ids(t, c) for c in request.criteria]
    # with other criteria, the person's rows are read first and tested one by one
    per_row = any(found is not None for found in persons) and any(found is None for found in persons)
    criteria: list[Shape] = []
    compartments: list[Slot] = []
    for c, found in zip(request.criteria, persons, strict=True):
        if found is None or not per_row:
            criteria.append(criterion_shape(c, lit))
        if found is not None:  # the same rows as the reference's index rows, by the resource's index
            compartments.append(lit.slot(found))
    has = tuple(has_shape(h, lit) for h in request.has)
    lists = [lit.values[slot.index] for slot in compartments]
    person = lit.slot(lists[0][0]) if len(lists) == 1 and len(lists[0]) == 1 else None
    return WhereShape(t, ids, tuple(criteria), tuple(compartments), has, person, per_row)


# value shapes whose selectivity depends on the value itself (a date range, a number
# comparison, a string prefix or ``:contains``, a token's ``:text``), not only on the parameter
_VALUE_SENSITIVE = frozenset({"date", "number", "like", "text"})


def plans_with_values(shape: WhereShape) -> bool:
    """Whether a search of ``shape`` should be planned with its values each time rather than run
    on a generic plan (``storage.database.planned_with_values``): it is driven by no id and no
    person (whose few rows any plan starts from), and one of its criteria is a range or a pattern,
    for which the best plan depends on how many rows the value matches (a ``_lastUpdated`` of
    the last minute: the type's ``last_updated`` index; of last year: the id order)."""
    if shape.ids or shape.compartments or shape.person is not None:
        return False
    return any(_value_sensitive(c) for c in shape.criteria) or any(_has_value_sensitive(h) for h in shape.has)


def _value_sensitive(criterion: Shape) -> bool:
    form = criterion[0]
    if form == "chain":
        return _value_sensitive(criterion[3])
    if form != "values":
        return False
    return any(value[0] in _VALUE_SENSITIVE for value in criterion[3])


def _has_value_sensitive(has: Shape) -> bool:
    _, _, criterion, nested = has
    if criterion is not None and _value_sensitive(criterion):
        return True
    return nested is not None and _has_value_sensitive(nested)
