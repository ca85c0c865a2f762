"""Storage: SQLAlchemy tables, the repositories (the only place with SQL), migrations."""
