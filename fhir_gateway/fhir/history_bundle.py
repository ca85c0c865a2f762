"""History Bundles (FHIR R4 http.html#history, bundle.html type ``history``)."""

from __future__ import annotations

from fhir_gateway.fhir.pages import Paging, paging_links
from fhir_gateway.fhir.reads import HistoryPage
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.timeutil import fhir_instant

_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def history_bundle(page: HistoryPage, base: str) -> bytes:
    """The page as a ``history`` Bundle, stored resources spliced in unparsed; its links carry
    cursors bound to the client (``fhir.cursors``)."""
    paging = Paging(page.url, page.kept, page.count, page.offset, page.cursors)
    head = {
        "resourceType": "Bundle",
        "type": "history",
        "total": page.total,
        "link": paging_links(paging, page.total, len(page.rows)),
    }
    parts: list[bytes] = []
    for row in page.rows:
        url = f"{row.res_type}/{row.res_id}"
        request = {"method": row.method or "PUT", "url": url if row.method != "POST" else row.res_type}
        response = {
            "status": _STATUS.get(row.method, "200 OK"),
            "etag": f'W/"{row.version}"',
            "lastModified": fhir_instant(row.last_updated_utc),
        }
        entry = b'{"fullUrl":' + jsonutil.dumps(f"{base}/{url}")
        if not row.deleted and row.content is not None:
            entry += b',"resource":' + row.content.encode()
        entry += b',"request":' + jsonutil.dumps(request) + b',"response":' + jsonutil.dumps(response) + b"}"
        parts.append(entry)
    return jsonutil.dumps(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"
