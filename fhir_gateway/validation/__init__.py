"""Validation: structural (fhir.resources models) and profiles (profiles/, FHIR R4 profiling.html)."""
