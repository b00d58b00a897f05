"""``collector receipts public-key [--rocketchat | --jwks]``: the key that verifies receipts."""

from __future__ import annotations

import click
import orjson

from collector.cli.common import main, settings
from collector.ingest import ReceiptSigner


@main.group()
def receipts() -> None:
    """Receipts (statsToken): the key Rocket.Chat servers verify them with."""


@receipts.command("public-key")
@click.option("--rocketchat", "form", flag_value="rocketchat",
              help="Print the value for Rocket.Chat's PUBLIC_STATS_KEY_V2 (base64 of the SPKI PEM).")
@click.option("--jwks", "form", flag_value="jwks", help="Print the JWK Set served at /.well-known/jwks.json.")
@click.option("--pem", "form", flag_value="pem", default=True, help="Print the SPKI PEM (the default).")
def public_key(form: str) -> None:
    """Print the receipts' public key. The signing key is the one ``serve`` uses
    (``COLLECTOR_SIGNING_KEY_FILE``, default under ``COLLECTOR_DATA_DIR``),
    made here if it does not exist yet."""
    cfg = settings()
    signer = ReceiptSigner.from_file(cfg.resolved_signing_key_file, cfg.receipt_issuer)
    if form == "rocketchat":
        click.echo(signer.rocketchat_public_key())
    elif form == "jwks":
        click.echo(orjson.dumps(signer.jwks(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(signer.public_key_pem(), nl=False)
