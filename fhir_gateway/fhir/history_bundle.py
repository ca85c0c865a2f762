"""History Bundles (FHIR R4 http.html#history, bundle.html type ``history``)."""

from __future__ import annotations

from urllib.parse import urlencode

from fhir_gateway.fhir.reads import HistoryPage
from fhir_gateway.kit import jsonutil
from fhir_gateway.kit.timeutil import fhir_instant

_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def history_bundle(page: HistoryPage, base: str, path: str, params: dict[str, str]) -> bytes:
    """The page as a ``history`` Bundle, stored resources spliced in unparsed."""
    head = {
        "resourceType": "Bundle",
        "type": "history",
        "total": page.total,
        "link": _links(page, base, path, params),
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


def _links(page: HistoryPage, base: str, path: str, params: dict[str, str]) -> list[dict[str, str]]:
    def url(offset: int) -> str:
        query = {k: v for k, v in params.items() if k not in ("_offset", "_count")}
        query.update({"_count": str(page.count), "_offset": str(offset)})
        return f"{base}{path}?{urlencode(query)}"

    links = [{"relation": "self", "url": url(page.offset)}]
    if page.offset + page.count < page.total:
        links.append({"relation": "next", "url": url(page.offset + page.count)})
    if page.offset > 0:
        links.append({"relation": "previous", "url": url(max(0, page.offset - page.count))})
    return links
