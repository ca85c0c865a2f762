"""What an import or export found and did (partner-formats/README.md, "Common rules").

Every problem names the line (1 = header), the column, the value and the reason; the
summary counts resources created, updated and unchanged and rows rejected. Rendered as an
OperationOutcome (FHIR R4 operationoutcome.html) for the HTTP operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_gateway.kit.errors import Issue, operation_outcome


@dataclass(frozen=True)
class Problem:
    """One problem of a file: line (1 = header, 0 = the whole file), column, value, reason."""

    line: int
    column: str
    value: str
    reason: str
    severity: str = "error"

    def text(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        column = f", column '{self.column}'" if self.column else ""
        value = f", value '{self.value}'" if self.value else ""
        return f"{where}{column}{value}: {self.reason}"

    def issue(self) -> Issue:
        expression = [f"line[{self.line}]" + (f".{self.column}" if self.column else "")]
        code = "invalid" if self.severity == "error" else "informational"
        if self.line == 0:
            return Issue(self.severity, code, self.text(), [])
        return Issue(self.severity, code, self.text(), expression)


class FileRefused(Exception):
    """The whole file is refused before any row (missing required column, encoding)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(p.text() for p in problems))
        self.problems = problems


MAX_LISTED = 1000


@dataclass
class Summary:
    """Counts and problems of one run (the first ``MAX_LISTED`` errors listed, all counted)."""

    format: str
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    written: bool = False
    dry_run: bool = False
    problems: list[Problem] = field(default_factory=list)
    error_count: int = 0

    def stored(self) -> int:
        """Resources this run wrote and committed (none for a dry run or a refused file)."""
        return self.created + self.updated if self.written and not self.dry_run else 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def add(self, problems: list[Problem]) -> None:
        """Record problems; past ``MAX_LISTED`` errors they are counted, not kept (flat memory)."""
        for problem in problems:
            if problem.severity == "error":
                self.error_count += 1
                if self.error_count == MAX_LISTED + 1:
                    note = f"more than {MAX_LISTED} errors: only the first {MAX_LISTED} are listed"
                    self.problems.append(Problem(0, "", "", note, severity="information"))
                if self.error_count > MAX_LISTED:
                    continue
            self.problems.append(problem)

    def counts(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
        }

    def line(self) -> str:
        state = (
            "dry run, nothing written" if self.dry_run else ("written" if self.written else "nothing written")
        )
        counts = ", ".join(f"{k} {v}" for k, v in self.counts().items())
        return f"{self.format}: {counts} ({state})"

    def outcome(self) -> dict[str, Any]:
        """An OperationOutcome: one issue per problem, then the counts as an information issue."""
        issues = [p.issue() for p in self.problems]
        issues.append(Issue("information", "informational", self.line(), []))
        result = operation_outcome(issues)
        result["extension"] = [
            {"url": f"urn:fhir-gateway:import:{name}", "valueInteger": value}
            for name, value in self.counts().items()
        ]
        return result
