"""Ingest: the path of a statistics report from the request to its receipt.

Public surface:
- ``Ingest`` (``pipeline``): the stage chain; ``handle(request) -> Answer``;
- ``ReportWriter`` (``writer``): the group-commit writer; ``load_secret``;
- ``ReceiptSigner`` (``receipts``): signs receipts, serves the JWKS;
- ``outcomes``: the closed list of outcomes (``Kind``, ``Reason``, ``Refusal``);
- ``quarantine``: refused reports (paths and reasons, never values);
- ``decoding``: the one body reader of every endpoint (limits, decompression) and the JSON parse;
- ``drift``: fields outside the catalogue that accepted reports carried (paths, types, counts).

Inside, in the order a report meets them: ``pipeline`` (auth, admission),
``decoding`` (body limits, decompression, JSON), the gate
(``collector.gate``), ``writer`` (opt-out decisions, storage, rollups in one
transaction), ``receipts``.
"""

from collector.ingest import decoding, drift, outcomes, quarantine
from collector.ingest.pipeline import Answer, Ingest
from collector.ingest.receipts import ReceiptSigner
from collector.ingest.writer import ReportWriter, load_secret

__all__ = ["Answer", "Ingest", "ReceiptSigner", "ReportWriter", "load_secret", "decoding", "drift", "outcomes",
           "quarantine"]
