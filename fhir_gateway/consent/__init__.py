"""Consent: FHIR Consent resources compiled into access grants; the decision and its SQL filter."""
