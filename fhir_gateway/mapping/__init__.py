"""The mapping engine: partner flat files <-> FHIR resources (DESIGN.md, Mapping; issue 5).

Formats are data in ``mappings/`` (``spec``); files are streamed (``csvio``), cells become
canonical values (``values``, ``rows``), rows become resources by templates (``template``,
``writer``) written through ``fhir.writes``; ``importer``/``exporter`` run a file;
``hooks`` holds the named generic rules the YAML refers to; ``commands`` is the CLI.
"""
