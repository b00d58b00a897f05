"""The errors of the accounts package, shared by its modules (so that
``workspaces`` can call ``plans`` and ``plans`` can name a missing workspace
without importing each other in a circle)."""


class UnknownWorkspace(LookupError):
    """No workspace with that id (or it is revoked, where that matters)."""


class UnknownPlan(ValueError):
    """The plan named does not exist in the plan catalogue."""
