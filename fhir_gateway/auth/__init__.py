"""OAuth2 / SMART on FHIR: authorization server, token validation, scopes."""
