"""`amqpctl` commands for users, vhosts and permissions, as rabbitmqctl has them.

`add_user`, `delete_user`, `change_password`, `set_user_tags`, `add_vhost`, `delete_vhost`,
`set_permissions`, `clear_permissions`, `list_permissions`, `list_user_permissions`: the
same arguments, informational lines, table columns and exit codes as rabbitmqctl 3.10
(67 for an unknown user, 65 or 69 for an unknown vhost, 70 for an existing user), each
done with the management API's calls. `add(commands)` registers them (their arguments
do not reuse the login's `username` and `password` names); `run` runs one.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from amqpd.ctl.client import (
    EX_DATAERR,
    EX_NOUSER,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    ApiClient,
    CtlError,
    segment,
)

COMMANDS = (
    "add_user",
    "delete_user",
    "change_password",
    "set_user_tags",
    "add_vhost",
    "delete_vhost",
    "set_permissions",
    "clear_permissions",
    "list_permissions",
    "list_user_permissions",
)


def add(commands: Any) -> None:
    """Add the subcommands to amqpctl's parser (`commands` is its subparsers action); `-p`
    may come after the command name, as rabbitmqctl takes it."""
    sub = commands.add_parser("add_user", help="create a user")
    sub.add_argument("user", metavar="username")
    sub.add_argument("new_password", metavar="password")
    sub = commands.add_parser("delete_user", help="delete a user (its connections are closed)")
    sub.add_argument("user", metavar="username")
    sub = commands.add_parser("change_password", help="set a user's password")
    sub.add_argument("user", metavar="username")
    sub.add_argument("new_password", metavar="password")
    sub = commands.add_parser("set_user_tags", help="set a user's tags (none: clear them)")
    sub.add_argument("user", metavar="username")
    sub.add_argument("tags", nargs="*", metavar="tag")
    sub = commands.add_parser("add_vhost", help="create a vhost")
    sub.add_argument("name")
    sub.add_argument("--description", default=None)
    sub.add_argument("--tags", default=None, help="comma-separated")
    sub.add_argument("--default-queue-type", default=None)
    sub = commands.add_parser("delete_vhost", help="delete a vhost and everything in it")
    sub.add_argument("name")
    sub = commands.add_parser("set_permissions", help="set a user's permissions on -p VHOST")
    sub.add_argument("user", metavar="username")
    sub.add_argument("conf")
    sub.add_argument("write")
    sub.add_argument("read")
    sub = commands.add_parser("clear_permissions", help="remove a user's access to -p VHOST")
    sub.add_argument("user", metavar="username")
    commands.add_parser("list_permissions", help="list the permissions on -p VHOST")
    sub = commands.add_parser("list_user_permissions", help="list a user's permissions")
    sub.add_argument("user", metavar="username")
    for name in ("set_permissions", "clear_permissions", "list_permissions"):
        commands.choices[name].add_argument(
            "-p", "--vhost", default=argparse.SUPPRESS, help="virtual host (default /)"
        )


def _no_user(name: str, quoted: bool = True) -> CtlError:
    shown = f'"{name}"' if quoted else name
    return CtlError(f"User {shown} does not exist", EX_NOUSER)


def _user(client: ApiClient, name: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = client.get(f"/api/users/{segment(name)}")
    except CtlError as error:
        if error.status == 404:
            return None
        raise
    return found


def _vhost_exists(client: ApiClient, name: str) -> bool:
    try:
        client.get(f"/api/vhosts/{segment(name)}")
    except CtlError as error:
        if error.status == 404:
            return False
        raise
    return True


def _table(args: argparse.Namespace, out: TextIO, columns: list[str], rows: list[dict]) -> None:
    if args.formatter == "json":
        json.dump([{column: row[column] for column in columns} for row in rows], out)
        out.write("\n")
        return
    if not args.no_table_headers:
        print("\t".join(columns), file=out)
    for row in rows:
        print("\t".join(str(row[column]) for column in columns), file=out)


def run(args: argparse.Namespace, client: ApiClient, out: TextIO, info: Any) -> int:
    """Run one of COMMANDS; `info(line)` prints an informational line unless -q."""
    command = args.command
    vhost = args.vhost
    if command == "add_user":
        info(f'Adding user "{args.user}" ...')
        if _user(client, args.user) is not None:
            raise CtlError(f'User "{args.user}" already exists', EX_SOFTWARE)
        client.request("PUT", f"/api/users/{segment(args.user)}",
                       {"password": args.new_password, "tags": ""})  # fmt: skip
        info(
            "Done. Don't forget to grant the user permissions to some virtual hosts! "
            "See 'rabbitmqctl help set_permissions' to learn more."
        )
        return 0
    if command == "delete_user":
        info(f'Deleting user "{args.user}" ...')
        try:
            client.request("DELETE", f"/api/users/{segment(args.user)}")
        except CtlError as error:
            if error.status == 404:
                raise _no_user(args.user) from None
            raise
        return 0
    if command == "change_password":
        info(f'Changing password for user "{args.user}" ...')
        user = _user(client, args.user)
        if user is None:
            raise _no_user(args.user)
        body = {"password": args.new_password, "tags": ",".join(user.get("tags") or [])}
        client.request("PUT", f"/api/users/{segment(args.user)}", body)
        return 0
    if command == "set_user_tags":
        info(f'Setting tags for user "{args.user}" to [{", ".join(args.tags)}] ...')
        user = _user(client, args.user)
        if user is None:
            raise _no_user(args.user)
        body = {
            "password_hash": user.get("password_hash", ""),
            "hashing_algorithm": user.get("hashing_algorithm", "rabbit_password_hashing_sha256"),
            "tags": ",".join(args.tags),
        }
        client.request("PUT", f"/api/users/{segment(args.user)}", body)
        return 0
    if command == "add_vhost":
        info(f'Adding vhost "{args.name}" ...')
        meta = {
            key: value
            for key, value in (
                ("description", args.description),
                ("tags", args.tags),
                ("default_queue_type", args.default_queue_type),
            )
            if value is not None
        }
        client.request("PUT", f"/api/vhosts/{segment(args.name)}", meta)
        return 0
    if command == "delete_vhost":
        info(f'Deleting vhost "{args.name}" ...')
        try:
            client.request("DELETE", f"/api/vhosts/{segment(args.name)}")
        except CtlError as error:
            if error.status == 404:
                raise CtlError(f"Virtual host '{args.name}' does not exist", EX_DATAERR) from None
            raise
        return 0
    if command == "set_permissions":
        info(f'Setting permissions for user "{args.user}" in vhost "{vhost}" ...')
        if not _vhost_exists(client, vhost):
            raise CtlError(f"Virtual host {vhost} does not exist", EX_UNAVAILABLE)
        if _user(client, args.user) is None:
            raise _no_user(args.user, quoted=False)
        body = {"configure": args.conf, "write": args.write, "read": args.read}
        try:
            client.request(
                "PUT", f"/api/permissions/{segment(vhost)}/{segment(args.user)}", body
            )
        except CtlError as error:
            raise CtlError(str(error), EX_UNAVAILABLE) from None
        return 0
    if command == "clear_permissions":
        info(f'Clearing permissions for user "{args.user}" in vhost "{vhost}" ...')
        if _user(client, args.user) is None:
            raise _no_user(args.user, quoted=False)
        if not _vhost_exists(client, vhost):
            raise CtlError(f"Virtual host {vhost} does not exist", EX_UNAVAILABLE)
        try:
            client.request("DELETE", f"/api/permissions/{segment(vhost)}/{segment(args.user)}")
        except CtlError as error:
            if error.status != 404:  # no permission there: nothing to clear, as rabbitmqctl
                raise
        return 0
    if command == "list_permissions":
        info(f'Listing permissions for vhost "{vhost}" ...')
        try:
            rows = client.get(f"/api/vhosts/{segment(vhost)}/permissions")
        except CtlError as error:
            if error.status == 404:
                raise CtlError(f"Virtual host '{vhost}' does not exist", EX_DATAERR) from None
            raise
        _table(args, out, ["user", "configure", "write", "read"], rows)
        return 0
    if command == "list_user_permissions":
        info(f'Listing permissions for user "{args.user}" ...')
        try:
            rows = client.get(f"/api/users/{segment(args.user)}/permissions")
        except CtlError as error:
            if error.status == 404:
                raise CtlError(
                    f'{{:no_such_user, "{args.user}"}}', EX_UNAVAILABLE
                ) from None
            raise
        _table(args, out, ["vhost", "configure", "write", "read"], rows)
        return 0
    raise CtlError(f"unknown command {command}", EX_SOFTWARE)
