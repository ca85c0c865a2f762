"""Profile validation of a resource: the profiles it claims and those the deployment
enforces (FHIR R4 profiling.html, "Claiming conformance"; resource.html#Meta ``meta.profile``).

A resource is checked against every profile named in its ``meta.profile`` (the core
definition of its own type is always accepted: structure is checked elsewhere), and
against the profile the deployment enforces for its type
(``FHIR_GATEWAY_ENFORCE_PROFILES="Patient=<url>,Consent=<url>"``). A profile URL this
server does not know is an error: claiming conformance to an unknown profile cannot be
honoured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_gateway.kit.errors import Issue, Unprocessable
from fhir_gateway.validation.registry import Profile, registry, use_folder

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
_ERRORS = ("error", "fatal")
_enforced: dict[str, str] | None = None


def parse_enforced(spec: str) -> dict[str, str]:
    """``"Patient=<url>,Consent=<url>"`` -> {type: url}; every URL must be a known profile of that type."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        res_type, sep, url = (s.strip() for s in part.partition("="))
        if not sep or not res_type or not url:
            raise ValueError(f"FHIR_GATEWAY_ENFORCE_PROFILES: '{part}' is not Type=<profile url>")
        profile = registry().get(url)
        if profile is None or profile.type != res_type:
            raise ValueError(f"FHIR_GATEWAY_ENFORCE_PROFILES: {url} is not a known {res_type} profile")
        out[res_type] = url
    return out


def configure(spec: str, folder: str = "") -> None:
    """Set the profiles folder and the enforced profiles of this process (called by ``create_app``)."""
    global _enforced
    use_folder(folder)
    _enforced = parse_enforced(spec)


def enforced() -> dict[str, str]:
    """{type: profile url} enforced on every write of that type."""
    global _enforced
    if _enforced is None:
        from fhir_gateway.settings import get_settings

        _enforced = parse_enforced(get_settings().enforce_profiles)
    return _enforced


def _claimed(body: dict[str, Any]) -> list[Any]:
    meta = body.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    return profiles if isinstance(profiles, list) else []


def _resolve(res_type: str, urls: Iterable[tuple[str, str]], issues: list[Issue]) -> list[Profile]:
    found: list[Profile] = []
    for url, where in urls:
        if url.split("|")[0] == CORE_PREFIX + res_type:
            continue
        profile = registry().get(url)
        if profile is None:
            known = ", ".join(sorted(registry().profiles))
            issues.append(
                Issue(
                    "error",
                    "not-supported",
                    f"{where}: '{url}' is not a profile of this server ({known})",
                    [where],
                )
            )
        elif profile.type != res_type:
            issues.append(
                Issue(
                    "error", "invalid", f"{where}: {url} constrains {profile.type}, not {res_type}", [where]
                )
            )
        elif profile not in found:
            found.append(profile)
    return found


def profile_issues(res_type: str, body: dict[str, Any], extra: Iterable[str] = ()) -> list[Issue]:
    """Issues of ``body`` against its claimed, enforced and ``extra`` profiles."""
    urls = [(str(u), f"{res_type}.meta.profile[{i}]") for i, u in enumerate(_claimed(body))]
    enforced_url = enforced().get(res_type)
    if enforced_url:
        urls.append((enforced_url, res_type))
    urls.extend((u, "profile") for u in extra)
    issues: list[Issue] = []
    for profile in _resolve(res_type, urls, issues):
        issues.extend(profile.check(body))
    return issues


def validate_profiles(res_type: str, body: dict[str, Any]) -> None:
    """Raise 422 (an OperationOutcome of every issue) when ``body`` breaks a profile it must meet."""
    if not _claimed(body) and res_type not in enforced():
        return
    issues = profile_issues(res_type, body)
    errors = [i for i in issues if i.severity in _ERRORS]
    if errors:
        raise Unprocessable(
            f"{res_type} does not conform to its profile: {errors[0].diagnostics}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            issues=issues,
        )
