"""SCRAM users and ACLs: what the spec asks for against what the cluster holds. Pure.

kafkaform owns the users and ACLs the spec lists, and the ones it created before (kept in the
cluster's state on this machine, `access.json`): those are created, rotated and deleted to match
the spec. Users and ACLs somebody made by other means are left alone and counted in the plan, so
a spec that does not mention them can never delete them by mistake.

A password change is seen without storing the password or a plain hash of it: the state keeps a
keyed digest (HMAC-SHA256 under the cluster's plan key, which only this machine holds) of the
password last set, and the plan carries the same digest of the one it will set, so apply refuses
a plan whose password changed after it was made.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from reconciler.security.spec import AclSpec


class AclRow(BaseModel):
    """One ACL as Kafka stores it: one operation on one resource pattern for one principal."""

    model_config = ConfigDict(frozen=True)
    principal: str  # User:<name> or User:*
    resource_type: str  # topic | group | cluster | transactional_id
    resource_name: str
    pattern: str  # literal | prefixed
    operation: str
    permission: str  # allow | deny
    host: str = "*"

    def sort_key(self) -> tuple[str, ...]:
        return (self.principal, self.resource_type, self.resource_name, self.pattern, self.operation,
                self.permission, self.host)

    def describe(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        where = "" if self.host == "*" else f" from {self.host}"
        return (f"{self.permission} {self.principal} {self.operation} on {self.resource_type} "
                f"{self.resource_name}{star}{where}")


def rows(acl: AclSpec) -> list[AclRow]:
    principal = "User:*" if acl.principal == "*" else f"User:{acl.principal}"
    return [AclRow(principal=principal, resource_type=acl.resource_type, resource_name=acl.resource_name,
                   pattern=acl.pattern, operation=op, permission=acl.permission, host=acl.host)
            for op in acl.operations]


def desired_rows(acls: tuple[AclSpec, ...]) -> set[AclRow]:
    return {r for a in acls for r in rows(a)}


class AccessPlan(BaseModel):
    """What the access step does, in the plan (names and rows; never a password)."""

    model_config = ConfigDict(frozen=True)
    users_create: tuple[str, ...] = ()
    users_rotate: tuple[str, ...] = ()  # the password in the spec differs from the one set last
    users_delete: tuple[str, ...] = ()
    acls_add: tuple[AclRow, ...] = ()
    acls_delete: tuple[AclRow, ...] = ()
    marks: dict[str, str] = {}  # user -> keyed digest of the password the step sets (stale check)
    unmanaged_users: int = 0  # users and ACLs kafkaform did not make: left alone
    unmanaged_acls: int = 0

    @property
    def empty(self) -> bool:
        return not (self.users_create or self.users_rotate or self.users_delete or self.acls_add or self.acls_delete)


def plan_access(spec_users: dict[str, str], spec_acls: set[AclRow], cluster_users: set[str],
                cluster_acls: set[AclRow], managed_users: dict[str, str], managed_acls: set[AclRow]) -> AccessPlan:
    """spec_users: name -> keyed digest of the spec's password now; managed_users: name -> the
    digest of the password kafkaform set last (state); cluster_*: what the cluster holds."""
    create = sorted(u for u in spec_users if u not in cluster_users)
    rotate = sorted(u for u in spec_users if u in cluster_users and managed_users.get(u) != spec_users[u])
    delete = sorted(u for u in managed_users if u not in spec_users and u in cluster_users)
    add = sorted(spec_acls - cluster_acls, key=AclRow.sort_key)
    drop = sorted((managed_acls - spec_acls) & cluster_acls, key=AclRow.sort_key)
    return AccessPlan(
        users_create=tuple(create), users_rotate=tuple(rotate), users_delete=tuple(delete),
        acls_add=tuple(add), acls_delete=tuple(drop),
        marks={u: spec_users[u] for u in (*create, *rotate)},
        unmanaged_users=len(cluster_users - set(spec_users) - set(managed_users)),
        unmanaged_acls=len(cluster_acls - spec_acls - managed_acls))
