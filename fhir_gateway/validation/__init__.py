"""Validation: structural (fhir.resources models) and, later, profiles."""
