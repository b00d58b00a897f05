"""The privacy gate: what of a statistics record may be kept, and how it is checked.

Public surface:
- ``check_report(doc) -> CheckedReport`` (raises ``SchemaViolation`` with
  ``Violation``s: path and reason, never a value); ``json_schema()``.
- The field catalogue's facts: ``CATALOGUE_VERSION``, ``CATALOGUE_PATH``,
  ``CATALOGUE_PATHS``, ``CATEGORIES``, ``CONTRACT_CATEGORIES``, ``OPTIONAL_CATEGORIES``;
  ``UNKNOWN_FIELD_MODES`` (``check_report(doc, unknown=...)``).

Inside: ``catalogue`` (loads ``schemas/catalogue.json``), ``rules`` (string
rules and identifier detectors), ``model`` (the strict pydantic v2 model,
which names violations), ``fastpath`` (the one-pass check of accepted
records). Imports nothing of the collector's.
"""

from collector.gate.catalogue import (
    CATALOGUE_PATH,
    CATALOGUE_PATHS,
    CATALOGUE_VERSION,
    CATEGORIES,
    CONTRACT_CATEGORIES,
    OPTIONAL_CATEGORIES,
)
from collector.gate.model import (
    UNKNOWN_FIELD_MODES,
    CheckedReport,
    SchemaViolation,
    Violation,
    check_report,
    json_schema,
)

__all__ = [
    "CATALOGUE_PATH", "CATALOGUE_PATHS", "CATALOGUE_VERSION", "UNKNOWN_FIELD_MODES", "CATEGORIES", "CONTRACT_CATEGORIES", "OPTIONAL_CATEGORIES",
    "CheckedReport", "SchemaViolation", "Violation", "check_report", "json_schema",
]
