"""Usage: the rollups fed from storage, and what billing and compliance read
from them (never from raw reports).

Public surface:
- ``rollups``: ``FIELDS`` (the report values rolled up), ``StoredReport`` and
  ``apply_reports`` (fold stored reports in), ``rollup_arrays`` /
  ``APPLY_ROLLUPS_SQL`` (what the ingest writer's batch passes);
- ``billing``: consumption per billing period and true-up over the contract term;
- ``compliance``: each workspace's status against its plan's limits.
"""

from collector.usage import billing, compliance, rollups
from collector.usage.rollups import StoredReport, apply_reports

__all__ = ["billing", "compliance", "rollups", "StoredReport", "apply_reports"]
