"""Lifecycle: how long data is kept, how a workspace takes it out, how it is erased.

Public surface (modules):
- ``retention``: ``run`` (apply the retention limits now), ``ensure_partitions``
  (the monthly report partitions, made ahead), ``drop_expired``;
- ``maintenance``: ``Maintenance`` (the background task of ``serve``: retention
  daily, once across workers and instances) and ``check`` (one round of it);
- ``export``: ``stream`` (everything held about a workspace, one JSON
  document, in chunks);
- ``erasure``: ``erase`` (a workspace removed in one transaction, one audit line).

Sealing and forgetting of report data itself (the data keys) is
``collector.accounts.datakeys``, below: the ingest writer seals with it.
"""

from collector.lifecycle import erasure, export, maintenance, retention
from collector.lifecycle.maintenance import Maintenance

__all__ = ["erasure", "export", "maintenance", "retention", "Maintenance"]
