"""Following a Bundle's paging links through HTTP (FHIR R4 http.html#paging)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

Entries = Callable[[dict[str, Any]], list[str]]


def walk(client: TestClient, url: str, entries: Entries) -> tuple[list[str], set[Any]]:
    """Follow ``next`` links from ``url``: what ``entries`` names of every page, and the totals seen."""
    seen: list[str] = []
    totals: set[Any] = set()
    next_url: str | None = url
    while next_url:
        page = client.get(next_url.replace("http://testserver", ""))
        assert page.status_code == 200, page.text
        bundle = page.json()
        totals.add(bundle.get("total"))
        seen += entries(bundle)
        next_url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return seen, totals
