"""Small shared helpers: OperationOutcome errors, JSON, time."""
