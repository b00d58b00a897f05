"""Accounts: who may post and who may read, on which terms.

Public surface (services as modules, each with its own docstring):
- ``tokens``: workspace and operator tokens, ``authenticate``, the token
  cache (``PrincipalCache``) and its ``RevocationListener``;
- ``workspaces``: the registry (register, rotate, revoke, show);
- ``plans``: the plan catalogue and the workspaces' contracts;
- ``optout``: opt-out policy by plan, the switch, forgetting, the audit trail;
- ``sessions``: console sessions (made at sign-in, valid while their operator
  token is, expiring);
- ``datakeys``: report data sealed per workspace and category (``seal``,
  ``unseal``, the writers' ``Keyring``), keys destroyed to forget
  (``destroy``) and rewritten out of the data files (``shred``, ``settle``);
- errors: ``UnknownWorkspace``, ``UnknownPlan``, ``Unauthorized``, ``Forbidden``,
  ``Invalid`` (an edit that does not fit; ``YEARS``: the years a term or period may fall in).
"""

from collector.accounts import datakeys, optout, plans, sessions, tokens, workspaces
from collector.accounts.errors import UnknownPlan, UnknownWorkspace
from collector.accounts.plans import YEARS, Invalid
from collector.accounts.tokens import (
    ROLES,
    Forbidden,
    Principal,
    PrincipalCache,
    RevocationListener,
    Unauthorized,
)

__all__ = [
    "datakeys", "optout", "plans", "sessions", "tokens", "workspaces",
    "UnknownPlan", "UnknownWorkspace", "Forbidden", "Unauthorized", "Invalid", "YEARS",
    "ROLES", "Principal", "PrincipalCache", "RevocationListener",
]
