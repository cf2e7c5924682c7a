"""The cluster's SCRAM users and ACLs, through the Admin API on kafkaform's own connection
(DescribeUserScramCredentials, DescribeAcls). Read for a secured cluster's plan only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.observe.connect import admin_client
from reconciler.security.access import AclRow

if TYPE_CHECKING:
    from reconciler.spec import ClusterSpec

RESOURCE_TYPES = {"topic": "TOPIC", "group": "GROUP", "cluster": "CLUSTER", "transactional_id": "TRANSACTIONAL_ID"}
PATTERNS = {"literal": "LITERAL", "prefixed": "PREFIXED"}


class AccessUnreadable(Exception):
    pass


def to_kafka(row: AclRow):  # noqa: ANN201 - kafka-python's ACL
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    return ACL(principal=row.principal, host=row.host, operation=ACLOperation[row.operation.upper()],
               permission_type=ACLPermissionType[row.permission.upper()],
               resource_pattern=ResourcePattern(ResourceType[RESOURCE_TYPES[row.resource_type]], row.resource_name,
                                                ACLResourcePatternType[PATTERNS[row.pattern]]))


def from_kafka(acl) -> AclRow | None:  # noqa: ANN001 - kafka-python's ACL
    """An ACL as kafkaform writes them; None for kinds the spec cannot express (e.g. on a
    delegation token or a user resource)."""
    kinds = {v: k for k, v in RESOURCE_TYPES.items()}
    patterns = {v: k for k, v in PATTERNS.items()}
    rp = acl.resource_pattern
    rtype, pattern = kinds.get(rp.resource_type.name), patterns.get(rp.pattern_type.name)
    if rtype is None or pattern is None:
        return None
    return AclRow(principal=acl.principal, resource_type=rtype, resource_name=rp.resource_name, pattern=pattern,
                  operation=acl.operation.name.lower(), permission=acl.permission_type.name.lower(), host=acl.host)


def read_access(spec: ClusterSpec, timeout_s: float = 10) -> tuple[set[str], set[AclRow], int]:
    """(SCRAM users, ACLs kafkaform can express, count of other ACLs). Raises AccessUnreadable."""
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
    from kafka.admin import ResourceType as RT

    try:
        admin = admin_client(spec, "kafkaform-observe", request_timeout_ms=int(timeout_s * 1000),
                             bootstrap_timeout_ms=int(timeout_s * 1000))
    except Exception as e:  # noqa: BLE001 - reported as the reason the plan cannot read access
        raise AccessUnreadable(f"{type(e).__name__}: {e}") from None
    try:
        users = {u for u, info in (admin.describe_user_scram_credentials() or {}).items()
                 if not info.get("error") and info.get("credential_infos")}
        acls, _err = admin.describe_acls(ACLFilter(
            principal=None, host=None, operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
            resource_pattern=ResourcePatternFilter(RT.ANY, None, ACLResourcePatternType.ANY)))
    except Exception as e:  # noqa: BLE001
        raise AccessUnreadable(f"{type(e).__name__}: {e}") from None
    finally:
        admin.close()
    rows = [from_kafka(a) for a in acls]
    return users, {r for r in rows if r is not None}, sum(r is None for r in rows)
