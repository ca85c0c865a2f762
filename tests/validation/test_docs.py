"""docs/profiles/ is generated from profiles/ and kept up to date."""

from __future__ import annotations

from fhir_gateway.validation.docs import DOCS_DIR, main, pages


def test_generated_pages_are_up_to_date() -> None:
    expected = pages()
    assert sorted(p.name for p in DOCS_DIR.glob("*.md")) == sorted(expected)
    for name, text in expected.items():
        assert (DOCS_DIR / name).read_text(encoding="utf-8") == text, (
            f"docs/profiles/{name} is stale: run python -m fhir_gateway.validation.docs"
        )
    assert main(["--check"]) == 0


def test_every_profile_page_lists_its_invariants() -> None:
    page = pages()["fg-patient.md"]
    assert "fg-nir-1" in page
    assert "`Patient.identifier:insNir.system`" in page
