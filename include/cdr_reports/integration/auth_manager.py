"""FAB auth manager whose tokens end with the credentials they were issued for.

Airflow's JWTs are stateless: ``FabAuthManager`` puts only the user id in them (``sub``), so a
token, and every token renewed from it (``POST /ui/auth/token`` needs nothing but a valid
token), stayed valid after the user's password changed, after a role was taken away, until it
expired. ``CdrFabAuthManager`` adds one claim, ``cdr_cred``: a digest of what the token's
authority rests on, the user's password hash, username, active flag and role ids. Every request
re-reads those (one primary-key query, not cached) and refuses a token whose digest no longer
matches, with Airflow's own "Invalid JWT token" (403). So a password change, a role change or a
deactivation ends every API, CLI and UI token issued before it, and the renewal path with them;
tokens issued afterwards work at once. Tokens without the claim (issued by another auth
manager) are refused too.

The digest is SHA-256 over the stored password *hash* (salted by FAB), so the claim, readable by
the token's holder, reveals nothing about the password. The class name keeps "FabAuthManager":
Airflow syncs DAG ``access_control`` only when ``[core] auth_manager`` contains that text
(``dag_processing/collection.py``).

Configure with ``AIRFLOW__CORE__AUTH_MANAGER=cdr_reports.integration.auth_manager.CdrFabAuthManager``
(``security.AUTH_MANAGER``; compose, ``make airflow`` and the test stacks do).
"""

from __future__ import annotations

import hashlib
from typing import Any

# Loaded by Airflow as [core] auth_manager, never while parsing DAGs: the subclass needs its base.
from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager  # noqa: TID253

CREDENTIALS_CLAIM = "cdr_cred"


def credentials_digest(
    user_id: int, username: str, password_hash: str | None, active: bool | None, role_ids: Any
) -> str:
    """The digest a token carries; changes whenever any of the inputs does."""
    parts = [str(user_id), username, password_hash or "", "1" if active else "0", ",".join(map(str, sorted(role_ids)))]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def _digest_of(user: Any) -> str:
    return credentials_digest(user.id, user.username, user.password, user.active, (r.id for r in user.roles))


def current_digest(user_id: int) -> str | None:
    """The digest of the stored user (None: no such user, or inactive); a fresh read every time."""
    from airflow.providers.fab.auth_manager.models import User
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    with create_session() as session:
        user = session.scalar(select(User).options(selectinload(User.roles)).where(User.id == user_id))
        if user is None or not user.is_active:
            return None
        return _digest_of(user)


class CdrFabAuthManager(FabAuthManager):
    """``FabAuthManager`` plus the ``cdr_cred`` claim (module docstring)."""

    def serialize_user(self, user: Any) -> dict[str, Any]:
        return {**super().serialize_user(user), CREDENTIALS_CLAIM: _digest_of(user)}

    # FAB's is a cachedmethod wrapper; this uncached front checks the digest, then uses it.
    def deserialize_user(self, token: dict[str, Any]) -> Any:  # type: ignore[override]
        user_id = int(token["sub"])
        current = current_digest(user_id)
        if current is None:
            raise ValueError(f"User with id {user_id} not found or not active")
        if token.get(CREDENTIALS_CLAIM) != current:
            raise ValueError(f"token of user {user_id} predates a change of its password, roles or status")
        user = super().deserialize_user(token)  # FAB's per-user cache, [fab] cache_ttl seconds
        if _digest_of(user) != current:
            # The cached user predates the change (e.g. the old roles): read it again.
            self.cache.pop(user_id, None)
            user = super().deserialize_user(token)
        return user
