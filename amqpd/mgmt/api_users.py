"""`/api/users`, `/api/permissions`, `PUT`/`DELETE /api/vhosts/{vhost}`: accounts at run time.

Administrators only, with RabbitMQ 3.10's bodies, status codes (201 created, 204 changed
or deleted, 400 with its reasons, 404) and side effects: deleting a user or a vhost
closes its connections with 320, a permission change applies to open connections at
their next check, a vhost created over the API gives its creator full permissions. What
is changed here lasts (the broker's `Accounts`, saved in the data directory).
"""

from __future__ import annotations

from typing import Any

from amqpd.accounts import AccountsError
from amqpd.config import Permission
from amqpd.mgmt import listing
from amqpd.mgmt.context import Call
from amqpd.mgmt.errors import ApiError, bad_request, method_not_allowed, not_found
from amqpd.mgmt.router import CREATED, NO_CONTENT, Router
from amqpd.mgmt.users import (
    BadBody,
    permission_json,
    permissions,
    user_from_body,
    user_json,
    vhost_meta,
)
from amqpd.store import StoreFailed

FULL = Permission(".*", ".*", ".*")


def _error(reason: Any) -> ApiError:
    return ApiError(400, "bad_request", reason)  # RabbitMQ's reasons are sometimes lists


def list_users(call: Call) -> Any:
    call.requester.require_admin()
    users = call.mgmt.broker.accounts.users()
    return listing.render([user_json(user) for user in users], call.query)


def users_without_permissions(call: Call) -> Any:
    call.requester.require_admin()
    users = call.mgmt.broker.accounts.users()
    return [user_json(user) for user in users if not user.permissions]


def show_user(call: Call) -> Any:
    call.requester.require_admin()
    user = call.mgmt.broker.accounts.user(call.params["user"])
    if user is None:
        raise not_found()
    return user_json(user)


def put_user(call: Call) -> Any:
    call.requester.require_admin()
    if not call.params["user"]:
        raise method_not_allowed()  # `/api/users/` is the list
    try:
        user = user_from_body(call.params["user"], call.json())
    except BadBody as error:
        raise _error(error.reason) from None
    return CREATED if call.mgmt.broker.accounts.put_user(user) else NO_CONTENT


def delete_user(call: Call) -> Any:
    call.requester.require_admin()
    if not call.mgmt.broker.delete_user(call.params["user"]):
        raise not_found()
    return NO_CONTENT


def bulk_delete_users(call: Call) -> Any:
    call.requester.require_admin()
    names = call.json().get("users")
    if names is None:
        raise bad_request("[{key_missing,users}]")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise bad_request("users must be a list of names")
    for name in names:  # in order, stopping at the first unknown one, as RabbitMQ
        if not call.mgmt.broker.delete_user(name):
            raise _error(["no_such_user", name])
    return NO_CONTENT


def list_permissions(call: Call) -> Any:
    call.requester.require_admin()
    accounts = call.mgmt.broker.accounts
    users = accounts.users()
    if "user" in call.params:
        found = accounts.user(call.params["user"])
        if found is None:
            raise not_found()
        users = [found]
    vhost = call.params.get("vhost")
    if vhost is not None:
        call.vhost()
    return permissions(users, vhost)


def show_permission(call: Call) -> Any:
    call.requester.require_admin()
    user = call.mgmt.broker.accounts.user(call.params["user"])
    permission = user.permission(call.params["vhost"]) if user is not None else None
    if user is None or permission is None:
        raise not_found()
    return permission_json(user.name, call.params["vhost"], permission)


def put_permission(call: Call) -> Any:
    call.requester.require_admin()
    body = call.json()
    missing = [key for key in ("configure", "write", "read") if key not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{key}}}" for key in missing) + "]")
    accounts = call.mgmt.broker.accounts
    try:
        created = accounts.set_permission(
            call.params["user"],
            call.params["vhost"],
            Permission(body["configure"], body["write"], body["read"]),
        )
    except AccountsError as error:
        raise _error(error.reason) from None
    return CREATED if created else NO_CONTENT


def delete_permission(call: Call) -> Any:
    call.requester.require_admin()
    if not call.mgmt.broker.accounts.clear_permission(call.params["user"], call.params["vhost"]):
        raise not_found()
    return NO_CONTENT


def put_vhost(call: Call) -> Any:
    call.requester.require_admin()
    name = call.params["vhost"]
    if not name:
        raise method_not_allowed()  # `/api/vhosts/` is the list
    try:
        meta = vhost_meta(call.json())
    except BadBody as error:
        raise _error(error.reason) from None
    broker = call.mgmt.broker
    try:
        created = broker.add_vhost(name, meta)
    except (StoreFailed, OSError, ValueError) as error:
        raise bad_request(f"cannot create vhost '{name}': {error}") from None
    if created:  # as RabbitMQ: whoever creates a vhost may use it
        broker.accounts.set_permission(call.requester.name, name, FULL)
    return CREATED if created else NO_CONTENT


def delete_vhost(call: Call) -> Any:
    call.requester.require_admin()
    name = call.params["vhost"]
    if not call.mgmt.broker.delete_vhost(name):
        raise not_found()
    policies = call.mgmt.policies
    for policy in policies.list(name):
        policies.delete(name, policy["name"])
    return NO_CONTENT


def register(router: Router) -> None:
    router.add("PUT", "/api/vhosts/{vhost}", put_vhost)
    router.add("DELETE", "/api/vhosts/{vhost}", delete_vhost)
    router.add("GET", "/api/vhosts/{vhost}/permissions", list_permissions)
    router.add("GET", "/api/users", list_users)
    router.add("GET", "/api/users/without-permissions", users_without_permissions)
    router.add("POST", "/api/users/bulk-delete", bulk_delete_users)
    router.add("GET", "/api/users/{user}", show_user)
    router.add("PUT", "/api/users/{user}", put_user)
    router.add("DELETE", "/api/users/{user}", delete_user)
    router.add("GET", "/api/users/{user}/permissions", list_permissions)
    router.add("GET", "/api/permissions", list_permissions)
    router.add("GET", "/api/permissions/{vhost}/{user}", show_permission)
    router.add("PUT", "/api/permissions/{vhost}/{user}", put_permission)
    router.add("DELETE", "/api/permissions/{vhost}/{user}", delete_permission)
