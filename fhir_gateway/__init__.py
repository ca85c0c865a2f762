"""fhir-gateway: a FHIR R4 backend for care-pathway coordination."""

__version__ = "0.1.0"
