"""Who may reach the internal dashboard, and what each signed-in person may do there.

Two ways to run it:
- **Without sign-in** (no `[auth]` in .streamlit/secrets.toml): the zero-setup local demo. It serves
  only the machine it runs on: a server address other than a loopback one is refused unless `OPEN_ENV`
  says that something in front of it authenticates every user (a reverse proxy with sign-in). Whoever
  reaches it is `LOCAL`, with every right.
- **With sign-in** (OpenID Connect through Streamlit's st.login): every visitor signs in first, and a
  person's role comes from a claim of their identity token, mapped in the `[roles]` section of
  secrets.toml (`RoleMap`). Without a role they see nothing but who they are.

Roles are ordered, each with the rights of the one before: viewer (Overview, Planner map, Rollout, the
public preview, exports), data steward (also the Data page: imports, status notes, publishing, the audit
trail), admin (also settings, such as the public snapshot's k). The public server is meant for everyone
and has none of this.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from lib.errors import NetzausbauError

OPEN_ENV = "NETZAUSBAU_OPEN_TO_NETWORK"
"""Set to 1 to serve the internal dashboard without sign-in to other machines (behind a proxy that signs
users in)."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")

ROLES = ("viewer", "data_steward", "admin")
"""Lowest first; each role has the rights of those before it."""

ROLE_LABELS = {"viewer": "Viewer", "data_steward": "Data steward", "admin": "Admin"}

RIGHTS = {
    "read": "viewer",        # the Overview, Planner map, Rollout and Public pages, and their exports
    "data": "data_steward",  # the Data page: see imports and rejects
    "import": "data_steward",
    "note": "data_steward",
    "publish": "data_steward",
    "audit": "data_steward",
    "settings": "admin",
}
"""Each right -> the lowest role that has it."""


class AccessConfigError(NetzausbauError):
    """The role mapping in secrets.toml cannot be used."""


class Refused(NetzausbauError):
    """A person asked for something their role does not allow."""


def open_to_network() -> bool:
    """Whether the operator allowed the internal dashboard on other addresses ($NETZAUSBAU_OPEN_TO_NETWORK)."""
    return os.environ.get(OPEN_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def refusal(address: str | None, public: bool, allowed: bool) -> str | None:
    """Why the internal dashboard will not serve on `address` (Streamlit's server.address; empty: every
    interface), or None when it may: loopback addresses always, others only when `allowed` (sign-in is
    configured, or `OPEN_ENV` is set) or `public`."""
    if public or allowed or (address or "").strip().lower() in LOOPBACK:
        return None
    where = address or "every network interface"
    return (f"This dashboard holds internal data and has no sign-in, so it serves only this machine, not "
            f"{where}. Start it with --server.address 127.0.0.1 (as make run does), configure sign-in "
            f"(docs/deploy.md), or, behind a proxy that signs users in, set {OPEN_ENV}=1.")


@dataclass(frozen=True)
class User:
    """A person using the internal dashboard: `who` is what the audit trail records."""

    name: str
    email: str
    role: str | None

    @property
    def who(self) -> str:
        if self.email and self.name and self.name != self.email:
            return f"{self.name} <{self.email}>"
        return self.email or self.name or "unknown"

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role or "", "no role")

    def may(self, right: str) -> bool:
        return may(self.role, right)


LOCAL = User("this machine (no sign-in)", "", "admin")
"""Whoever uses a dashboard without sign-in: it serves only its own machine (`refusal`)."""


def may(role: str | None, right: str) -> bool:
    """Whether `role` has `right` (a key of `RIGHTS`); no role has none."""
    if right not in RIGHTS:
        raise KeyError(f"unknown right {right!r}")
    return role in ROLES and ROLES.index(role) >= ROLES.index(RIGHTS[right])


def require(user: User, right: str) -> None:
    """Raise `Refused` unless `user` may do `right`: every action checks this on the server."""
    if not user.may(right):
        raise Refused(f"{user.who} ({user.role_label}) may not {right}: that needs the "
                      f"{ROLE_LABELS[RIGHTS[right]]} role.")


def claim_values(claims: Mapping, path: str) -> set[str]:
    """The values of a claim as strings: `path` may be dotted (Keycloak's realm_access.roles); a list gives
    each item, a string itself, a missing claim nothing."""
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return set()
        value = value[part]
    if isinstance(value, (list, tuple, set)):
        return {str(v) for v in value if v is not None}
    return set() if value is None else {str(value)}


@dataclass(frozen=True)
class RoleMap:
    """The `[roles]` section of secrets.toml: which claim values (and which e-mail addresses) give a role.

        [roles]
        claim = "groups"                      # dotted paths work: "realm_access.roles"
        viewer = ["netz-viewer"]              # values of that claim
        data_steward = ["netz-data"]
        admin = ["netz-admin"]
        admin_emails = ["it@example.de"]      # people named by their verified e-mail, for providers
                                              # without a groups claim (Google Workspace)

    A value "*" gives the role to everyone the provider signs in. A person gets the highest role any of
    their values or their e-mail matches.
    """

    claim: str = "groups"
    values: dict[str, frozenset[str]] = field(default_factory=dict)
    emails: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, section: Mapping | None) -> RoleMap:
        """Read the `[roles]` section; raise `AccessConfigError` naming what is wrong."""
        if not section:
            raise AccessConfigError("Sign-in is configured ([auth] in secrets.toml) but no role mapping: add a "
                                    "[roles] section (docs/deploy.md), or nobody can use the dashboard.")
        known = {"claim", *ROLES, *(f"{r}_emails" for r in ROLES)}
        if unknown := sorted(set(section) - known):
            raise AccessConfigError(f"[roles] in secrets.toml: unknown key(s) {', '.join(unknown)}; known keys "
                                    f"are {', '.join(sorted(known))}.")
        claim = section.get("claim", "groups")
        if not isinstance(claim, str) or not claim.strip():
            raise AccessConfigError("[roles] claim in secrets.toml must be the name of a claim, e.g. \"groups\".")

        def strings(key: str) -> frozenset[str]:
            v = section.get(key, [])
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
                raise AccessConfigError(f"[roles] {key} in secrets.toml must be a list of strings.")
            return frozenset(x.strip() for x in v if x.strip())

        values = {r: strings(r) for r in ROLES}
        emails = {r: frozenset(e.lower() for e in strings(f"{r}_emails")) for r in ROLES}
        if not any(values.values()) and not any(emails.values()):
            raise AccessConfigError("[roles] in secrets.toml gives no role to anyone: list claim values under "
                                    "viewer, data_steward or admin.")
        return cls(claim.strip(), values, emails)

    def role_of(self, claims: Mapping) -> str | None:
        """The highest role `claims` (a signed-in person's identity) match, or None."""
        have = claim_values(claims, self.claim)
        email = str(claims.get("email") or "").lower()
        verified = claims.get("email_verified", True) is not False
        for role in reversed(ROLES):
            if "*" in self.values[role] or have & self.values[role]:
                return role
            if email and verified and email in self.emails[role]:
                return role
        return None

    def user(self, claims: Mapping) -> User:
        """The person `claims` describe, with their role."""
        email = str(claims.get("email") or "")
        name = str(claims.get("name") or claims.get("preferred_username") or email or claims.get("sub") or "")
        return User(name, email, self.role_of(claims))
