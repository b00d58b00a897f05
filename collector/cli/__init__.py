"""The ``collector`` command (click).

  collector serve [--host H] [--port P]        run the HTTP service
  collector workspace add --plan PLAN [--label L]   register a workspace (prints JSON with its token)
  collector workspace label ID LABEL | --clear       the operator's name for the account
  collector workspace rotate|revoke|show ID
  collector operator-token add --role R [...]  make an operator token (roles admin, billing, compliance)
  collector migrate                            apply the SQL migrations and exit
  collector plan list|show PLAN                the plan catalogue
  collector plan set-limit PLAN KIND MAX [--behavior B]   (negative MAX = unlimited)
  collector plan set PLAN [--billing-model M] [--mac-pack-size N] [--opt-out CATEGORY ...]
  collector contract set WORKSPACE_ID [--plan P] [--term-start D] [--term-end D] [--seats N | --no-seats]
                         [--mac-packs N] [--limit kind=N ... | --no-limits]   (changes only what is given)
  collector contract show WORKSPACE_ID
  collector compliance [--status S ...] [--label L] [--workspace ID]   as GET /api/v1/compliance
  collector billing [--period YYYY-MM | --from D --to D] [--csv]   as GET /api/v1/billing/consumption
  collector demo [--workspaces N] [--days D]   demo workspaces with records of the last weeks
  collector retention run                      apply retention now; prints what it removed
  collector workspace export ID                everything held about a workspace (one JSON document)
  collector workspace erase ID                 erase a workspace (one audit line remains)
  collector quarantine list [...]              refused reports, as GET /api/v1/quarantine
  collector catalogue drift                    fields outside the catalogue, as GET /api/v1/catalogue/drift

CLI access is admin access: the commands talk to the database directly, with
no operator token and no role check; whoever can run them can do everything.

Database: ``DATABASE_URL`` when set, otherwise the embedded PostgreSQL under
``COLLECTOR_DATA_DIR`` (default ``.collector``), the same one ``serve`` uses.
Every command prints JSON on stdout (``billing --csv``: CSV); errors go to stderr with exit code 1.
"""

from collector.cli import demo, lifecycle, operators, plans, receipts, records, serve, usage, workspaces  # noqa: F401  (register the commands)
from collector.cli.common import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
