"""``collector operator-token ...``: operator tokens (made, listed, revoked)."""

from __future__ import annotations

import click

from collector.accounts import ROLES, tokens
from collector.cli.common import main, run_with_conn


@main.group("operator-token")
def operator_token() -> None:
    """Operator tokens."""


@operator_token.command("add")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLES))
@click.option("--label", default=None, help="A note for the operator (not a secret).")
def operator_token_add(roles: tuple[str, ...], label: str | None) -> None:
    """Make an operator token with the given roles; prints it once."""

    async def go(conn):
        return await tokens.create_operator_token(conn, list(roles), label)

    run_with_conn(go)


@operator_token.command("list")
def operator_token_list() -> None:
    """List operator tokens (references, roles, labels; never the tokens)."""
    run_with_conn(tokens.list_operator_tokens)


@operator_token.command("revoke")
@click.argument("ref")
def operator_token_revoke(ref: str) -> None:
    """Revoke the operator token with reference REF (from `operator-token list`)."""
    run_with_conn(lambda conn: tokens.revoke_operator_token(conn, ref))
