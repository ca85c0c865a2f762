"""The configuration reference of the README, generated from the settings model (issue 10).

``python -m fhir_gateway.settings_reference`` rewrites the table between the README's
``<!-- settings:begin -->`` and ``<!-- settings:end -->`` markers; ``--check`` exits 1 when
it is out of date (a test runs the check), so the documentation cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fhir_gateway.settings import Settings

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"
_SHOWN_DEFAULTS = {"database_url": "sqlite:///./fhir-gateway.db (in the working directory)"}


def markdown_table() -> str:
    """One row per setting: environment variable, default, meaning (from ``Field(description=)``)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = _SHOWN_DEFAULTS.get(name, field.default)
        shown = f"`{default}`" if default not in ("", None) else "(none)"
        if isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `FHIR_GATEWAY_{name.upper()}` | {shown} | {meaning} |")
    return "\n".join(rows)


def rewritten(readme: str) -> str:
    """``readme`` with the generated table between the markers."""
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{markdown_table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"{README} has no {BEGIN} ... {END} section", file=sys.stderr)
        return 2
    fresh = rewritten(text)
    if "--check" in argv:
        if fresh != text:
            print("README configuration reference is out of date: python -m fhir_gateway.settings_reference")
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
