"""Usage: the rollups fed from storage, and what billing and compliance read
from them (never from raw reports).

Public surface:
- ``rollups``: ``FIELDS`` (the report values rolled up), ``StoredReport`` and
  ``apply_reports`` (fold stored reports in), ``snapshot_values``,
  ``rollup_arrays`` / ``rollup_columns`` / ``APPLY_ROLLUPS_SQL`` (what the ingest writer's batch passes);
- ``billing``: consumption per billing period and true-up over the contract term;
- ``compliance``: each workspace's status against its plan's limits (the
  listing, one workspace, and the console's worst-first ``board``);
- ``history``: a workspace's usage day by day (the console's chart).
"""

from collector.usage import billing, compliance, history, rollups
from collector.usage.rollups import StoredReport, apply_reports

__all__ = ["billing", "compliance", "history", "rollups", "StoredReport", "apply_reports"]
