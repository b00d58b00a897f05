"""Operations, at the bottom: imports nothing of the collector's but ``config``.

Public surface (modules):
- ``database``: the pool, migrations (``sql/``), the embedded PostgreSQL
  (``embedded``: who holds it, stopped by the last),
  ``UNAVAILABLE_ERRORS``, shared advisory-lock namespaces;
- ``logs``: structured logging (structlog); ``metrics``: Prometheus metrics;
- ``serving``: ``collector serve``'s processes; ``listening``: the HTTP
  listener of one (header read deadline, idle keep-alive bound, a stop that
  resets nothing queued); ``sqljson``: JSON and CSV
  rendered by PostgreSQL.
"""

from collector.ops import database, embedded, listening, logs, metrics, serving, sqljson
from collector.ops.database import ROLLUP_LOCK_NAMESPACE, UNAVAILABLE_ERRORS
from collector.ops.logs import log

__all__ = ["database", "embedded", "listening", "logs", "metrics", "serving", "sqljson", "ROLLUP_LOCK_NAMESPACE", "UNAVAILABLE_ERRORS", "log"]
