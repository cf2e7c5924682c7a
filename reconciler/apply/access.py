"""The access step: SCRAM users and ACLs changed through the Admin API, exactly as the plan lists
them; passwords come from the spec's secret references now (a password that changed since the
plan was made refuses the step), and the state on this machine records what kafkaform manages."""

from __future__ import annotations

from collections.abc import Callable

from reconciler.apply import state
from reconciler.observe.access import to_kafka
from reconciler.observe.connect import admin_client
from reconciler.security.access import AccessPlan, AclRow
from reconciler.security.material import material_of
from reconciler.spec import ClusterSpec


class AccessFailed(Exception):
    pass


def apply_access(spec: ClusterSpec, plan: AccessPlan, marks: dict[str, str],
                 progress: Callable[[str], None] | None = None) -> str:
    """Create/rotate/delete users, then add/delete ACL rows; `marks` are the passwords' keyed
    digests now (checked against the plan's)."""
    from kafka.admin import ScramMechanism, UserScramCredentialDeletion, UserScramCredentialUpsertion

    say = progress or (lambda _m: None)
    changed = sorted(u for u in plan.marks if marks.get(u) != plan.marks[u])
    if changed:
        raise AccessFailed(f"saved plan is stale: the password of {', '.join(changed)} changed since the plan was "
                           "made; plan again")
    users = material_of(spec).users
    admin = admin_client(spec, request_timeout_ms=30_000)
    try:
        alterations = [UserScramCredentialUpsertion(u, ScramMechanism.SCRAM_SHA_512, users[u].reveal())
                       for u in (*plan.users_create, *plan.users_rotate)]
        alterations += [UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512) for u in plan.users_delete]
        if alterations:
            errors = _alter_credentials(admin, alterations)
            if errors:
                raise AccessFailed("; ".join(f"user {u}: {e}" for u, e in sorted(errors.items())))
            say(f"users: {len(plan.users_create)} created, {len(plan.users_rotate)} rotated, "
                f"{len(plan.users_delete)} deleted")
        if plan.acls_add:
            res = admin.create_acls([to_kafka(r) for r in plan.acls_add])
            if res.get("failed"):
                raise AccessFailed(f"CreateAcls refused {len(res['failed'])} ACL(s): {res['failed'][0]}")
        if plan.acls_delete:
            for _f, _matched, err in admin.delete_acls([to_kafka(r) for r in plan.acls_delete]):
                if err.__name__ != "NoError":
                    raise AccessFailed(f"DeleteAcls: {err.__name__}")
    finally:
        admin.close()
    _remember(spec.name, plan)
    return (f"{len(plan.users_create) + len(plan.users_rotate) + len(plan.users_delete)} user(s) and "
            f"{len(plan.acls_add) + len(plan.acls_delete)} ACL(s) changed")


def _alter_credentials(admin, alterations: list) -> dict[str, str]:  # noqa: ANN001 - kafka-python's client
    """AlterUserScramCredentials sent to the controller, every user's error checked. A ZooKeeper-
    mode broker that is not the controller answers NOT_CONTROLLER for each user, with no message,
    which kafka-python's own call reports as success: so the request goes through its controller
    routing (a private method; kafka-python 3.0 has no public one for this request)."""
    import kafka.errors as errors
    from kafka.admin import UserScramCredentialDeletion
    from kafka.protocol.admin import AlterUserScramCredentialsRequest

    deletions = [(a.user, int(a.mechanism)) for a in alterations if isinstance(a, UserScramCredentialDeletion)]
    upsertions = [(a.user, int(a.mechanism), a.iterations, a.salt, a.salted_password) for a in alterations
                  if not isinstance(a, UserScramCredentialDeletion)]
    request = AlterUserScramCredentialsRequest(deletions=deletions, upsertions=upsertions)

    def codes(response):  # noqa: ANN001, ANN202
        return [errors.for_code(r.error_code) for r in response.results]

    response = admin._manager.run(admin._send_request_to_controller, request, codes, False)
    return {r.user: f"{errors.for_code(r.error_code).__name__}: {r.error_message or ''}".rstrip(": ")
            for r in response.results if r.error_code}


def _remember(cluster: str, plan: AccessPlan) -> None:
    users, rows = state.access_state(cluster)
    users.update(plan.marks)
    for u in plan.users_delete:
        users.pop(u, None)
    acls = {AclRow(**r) for r in rows} | set(plan.acls_add)
    acls -= set(plan.acls_delete)
    state.save_access_state(cluster, users, [r.model_dump() for r in sorted(acls, key=AclRow.sort_key)])
