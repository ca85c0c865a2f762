"""Bulk ``$export`` (FHIR Bulk Data Access IG v2): the requester's identity kept with the job,
and the worker that writes the NDJSON files (issue 8)."""
