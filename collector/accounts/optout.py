"""Opt-out by plan: which data categories a workspace may switch off, the
switch itself, forgetting what was stored, and the audit trail.

Rules (issue 5; Rocket.Chat's privacy policy of 20 Oct 2023: "some plans may
switch the collection off while others may not"):

- The field catalogue sorts every kept field into a data category.
  ``billing`` and ``compliance`` are contract data and can never be switched
  off; ``operational`` and ``product_analytics`` are optional.
- A plan lists the optional categories its workspaces may switch off
  (``plans.opt_out_categories``); a contract may override that list
  (``contracts.opt_out_categories``; NULL = the plan's). Defaults:
  community, starter, pro: none (as Rocket.Chat ships since 6.5);
  enterprise: operational and product_analytics.
- A workspace's switch (``workspaces.opt_out``) drops the allowed categories
  of every report from then on, before storage (``collector.ingest.writer`` reads
  the decisions inside its write transaction, SQL ``write_batch``, so a
  report racing an opt-out is either forgotten with the rest or stored
  without them).
- Switching on forgets, in the same transaction, what was already stored for
  those categories (their ``report_data`` columns are set to NULL, and the
  workspace's keys of those categories are destroyed: ``datakeys``, so the
  sealed bytes still in the data files cannot be read; the table of keys is
  rewritten right after the commit, ``datakeys.settle``) and writes
  an audit record: when, by whom, which categories, how many reports had data
  forgotten (``reports_affected``); never a value. Every change of what a
  workspace drops NOTIFYs it, so the ingest writers' cached keys follow.
- A plan or policy change re-evaluates (``reevaluate``): when the workspace's
  plan no longer allows any opt-out, the opt-out ends (audited); otherwise the
  workspace's choice stays and newly allowed categories are forgotten too.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg
import orjson

from collector.accounts import datakeys
from collector.accounts.errors import UnknownWorkspace
from collector.gate import OPTIONAL_CATEGORIES


class OptOutNotAllowed(Exception):
    """The workspace's plan (or contract) allows no opt-out."""

    def __init__(self, plan: str):
        super().__init__(f"plan '{plan}' does not allow opting out of statistics")
        self.plan = plan


class InvalidCategories(ValueError):
    """A policy named a category that cannot be switched off (or does not exist)."""


def check_categories(categories: list[str]) -> list[str]:
    """Validate a policy's category list; return it sorted and de-duplicated.

    Raises InvalidCategories when it names anything but the optional
    categories (``operational``, ``product_analytics``).
    """
    bad = sorted(set(categories) - set(OPTIONAL_CATEGORIES))
    if bad:
        raise InvalidCategories(
            "only the optional categories can be switched off: " + ", ".join(OPTIONAL_CATEGORIES)
        )
    return sorted(set(categories))


async def status(conn, workspace_id: UUID) -> dict:
    """The workspace's opt-out status.

    Returns ``{"workspace_id", "plan", "opt_out" (bool), "allowed" [categories
    it may switch off], "policy_source" ("plan"|"contract"), "dropped"
    [categories dropped now], "changed_at" (ISO 8601 or None)}``.
    Raises UnknownWorkspace.
    """
    row = await conn.fetchrow("SELECT * FROM workspace_opt_out WHERE workspace_id = $1", workspace_id)
    if row is None:
        raise UnknownWorkspace(str(workspace_id))
    return {
        "workspace_id": str(workspace_id),
        "plan": row["plan"],
        "opt_out": row["opt_out"],
        "allowed": sorted(row["allowed"]),
        "policy_source": row["policy_source"],
        "dropped": sorted(row["dropped"]),
        "changed_at": row["opt_out_changed_at"].isoformat() if row["opt_out_changed_at"] else None,
    }


@dataclass(frozen=True)
class Decision:
    """What the opt-out policy drops from one workspace's reports, and why."""

    dropped: frozenset[str] = frozenset()
    why: str = ""


def decision(dropped: list[str] | None, plan: str | None, policy_source: str | None) -> Decision | None:
    """The Decision for a workspace whose opt-out drops ``dropped`` (from SQL
    ``opt_out_decisions``), None when it drops nothing."""
    if not dropped:
        return None
    return Decision(
        frozenset(dropped),
        f"the workspace opted out; its plan '{plan}' allows it"
        if policy_source == "plan"
        else "the workspace opted out; its contract allows it",
    )


async def _lock(conn, workspace_ids: list[UUID] | None, mode: str) -> None:
    """Lock the registry rows (mode SHARE or UPDATE), in workspace id order so that
    concurrent lockers cannot deadlock. ``None``: every opted-out workspace.

    The policy is read by the caller in a LATER statement: under READ COMMITTED
    each statement sees what was committed when it started, so reading after
    the lock is granted sees the change of any transaction the lock waited for.
    """
    await conn.execute(
        f"SELECT 1 FROM workspaces WHERE ($1::uuid[] IS NULL AND opt_out) OR workspace_id = ANY($1::uuid[])"
        f" ORDER BY workspace_id FOR {mode}",
        workspace_ids,
    )


async def _forget(conn, workspace_id: UUID, categories: list[str]) -> int:
    """Forget the workspace's stored data of ``categories`` (optional ones only):
    set those ``report_data`` columns to NULL and destroy the workspace's keys
    of them (``datakeys.destroy``: what is left of the sealed bytes on disk is
    unreadable). Returns how many reports had data of them (0 when there was
    none left to forget)."""
    cols = [c for c in OPTIONAL_CATEGORIES if c in categories]  # column names from the catalogue only
    if not cols:
        return 0
    await datakeys.destroy(conn, workspace_id, cols)
    result = await conn.execute(
        f"UPDATE report_data SET {', '.join(f'{c} = NULL' for c in cols)}"
        f" WHERE workspace_id = $1 AND ({' OR '.join(f'{c} IS NOT NULL' for c in cols)})",
        workspace_id,
    )
    return int(result.split()[-1])


async def _audit(conn, actor: str, workspace_id: UUID | None, action: str, categories: list[str],
                 reports_affected: int = 0, reason: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, workspace_id, action, categories, reports_affected, reason)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        actor, workspace_id, action, categories, reports_affected, reason,
    )


async def set_opt_out(conn: asyncpg.Connection, workspace_id: UUID, opt_out: bool, actor: str) -> dict:
    """Switch the workspace's opt-out on or off, in one transaction.

    On: forgets the stored data of the allowed categories and audits
    ``opt_out_set`` with the number of reports that had some. Off: audits
    ``opt_out_cleared``; data is kept again from the next report. Setting the
    current state again is a no-op (no audit record). Returns ``status`` plus
    ``reports_affected`` (reports whose optional data was forgotten now).
    Raises UnknownWorkspace; OptOutNotAllowed when switching on and the plan
    (or contract) allows no category.
    """
    async with conn.transaction():
        await _lock(conn, [workspace_id], "UPDATE")
        row = await conn.fetchrow(
            "SELECT o.plan, o.allowed, o.opt_out FROM workspace_opt_out o"
            " JOIN workspaces w ON w.workspace_id = o.workspace_id"
            " WHERE o.workspace_id = $1 AND w.revoked_at IS NULL",
            workspace_id,
        )
        if row is None:
            raise UnknownWorkspace(str(workspace_id))
        reports_affected = 0
        if opt_out and not row["allowed"]:
            raise OptOutNotAllowed(row["plan"])
        if opt_out != row["opt_out"]:
            await conn.execute(
                "UPDATE workspaces SET opt_out = $2, opt_out_changed_at = now() WHERE workspace_id = $1",
                workspace_id, opt_out,
            )
            await datakeys.notify(conn, workspace_id)  # the writers' keys follow what is dropped
            allowed = sorted(row["allowed"])
            if opt_out:
                reports_affected = await _forget(conn, workspace_id, allowed)
                await _audit(conn, actor, workspace_id, "opt_out_set", allowed, reports_affected)
            else:
                await _audit(conn, actor, workspace_id, "opt_out_cleared", allowed)
        answer = {**await status(conn, workspace_id), "reports_affected": reports_affected}
    await datakeys.settle(conn)
    return answer


async def reevaluate(conn: asyncpg.Connection, workspace_ids: list[UUID] | None, actor: str, reason: str) -> None:
    """Re-apply the opt-out rules after a plan, policy or contract change
    (call inside the transaction that made the change).

    ``workspace_ids`` None means every opted-out workspace. A workspace whose
    plan no longer allows any opt-out has its opt-out ended (audited
    ``opt_out_ended``); one still opted out has the rows of every category it
    now drops forgotten (audited ``data_forgotten`` when some report had data of them).
    """
    await _lock(conn, sorted(set(workspace_ids)) if workspace_ids is not None else None, "UPDATE")
    rows = await conn.fetch(
        "SELECT workspace_id, allowed FROM workspace_opt_out"
        " WHERE opt_out AND ($1::uuid[] IS NULL OR workspace_id = ANY($1::uuid[])) ORDER BY workspace_id",
        workspace_ids,
    )
    for r in rows:
        ws, allowed = r["workspace_id"], sorted(r["allowed"])
        await datakeys.notify(conn, ws)  # what it drops may change: the writers' keys follow
        if not allowed:
            await conn.execute(
                "UPDATE workspaces SET opt_out = false, opt_out_changed_at = now() WHERE workspace_id = $1", ws
            )
            await _audit(conn, actor, ws, "opt_out_ended", [], 0, reason)
        else:
            affected = await _forget(conn, ws, allowed)
            if affected:
                await _audit(conn, actor, ws, "data_forgotten", allowed, affected, reason)


async def set_contract_policy(conn: asyncpg.Connection, workspace_id: UUID, categories: list[str] | None, actor: str) -> dict:
    """Override (list) or reset to the plan's (None) the categories this
    workspace's contract lets it switch off; re-evaluates and audits
    ``policy_changed``. Returns ``status``. Raises UnknownWorkspace, InvalidCategories."""
    cats = check_categories(categories) if categories is not None else None
    async with conn.transaction():
        done = await conn.fetchval(
            "UPDATE contracts SET opt_out_categories = $2, updated_at = now() WHERE workspace_id = $1 RETURNING 1",
            workspace_id, cats,
        )
        if not done:
            raise UnknownWorkspace(str(workspace_id))
        await _audit(conn, actor, workspace_id, "policy_changed", cats or [], 0,
                     "contract policy reset to the plan's" if cats is None else "contract policy set")
        await reevaluate(conn, [workspace_id], actor, "contract opt-out policy changed")
        answer = await status(conn, workspace_id)
    await datakeys.settle(conn)
    return answer


async def audit_listing(conn, *, workspace_id: UUID | None = None, limit: int = 100) -> list[dict]:
    """Audit records, newest first: ``{"audit_id", "at", "actor", "workspace_id",
    "action", "categories", "reports_affected", "reason"[, "counts"]}`` (no values;
    ``reports_affected``: how many reports had data forgotten by the action;
    ``counts``, of a ``workspace_erased`` line: rows removed per table)."""
    rows = await conn.fetch(
        "SELECT * FROM audit_log WHERE ($1::uuid IS NULL OR workspace_id = $1)"
        " ORDER BY at DESC, audit_id DESC LIMIT $2",
        workspace_id, max(1, min(limit, 1000)),
    )
    return [
        {
            "audit_id": r["audit_id"],
            "at": r["at"].isoformat(),
            "actor": r["actor"],
            "workspace_id": str(r["workspace_id"]) if r["workspace_id"] else None,
            "action": r["action"],
            "categories": list(r["categories"]),
            "reports_affected": r["reports_affected"],
            "reason": r["reason"],
            **({"counts": orjson.loads(r["counts"])} if r.get("counts") is not None else {}),
        }
        for r in rows
    ]
