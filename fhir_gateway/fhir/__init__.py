"""FHIR REST semantics: endpoints, service, bundles, capability, operations."""
