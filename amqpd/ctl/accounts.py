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


def _no_vhost(name: str, code: int = EX_UNAVAILABLE, quoted: bool = False) -> CtlError:
    shown = f"'{name}'" if quoted else name
    return CtlError(f"Virtual host {shown} does not exist", code)


def _call(
    client: ApiClient, method: str, path: str, body: Any = None, missing: CtlError | None = None
) -> Any:
    """The API's answer; a 404 raises `missing` (None: answers None)."""
    try:
        return client.request(method, path, body)
    except CtlError as error:
        if error.status != 404:
            raise
        if missing is not None:
            raise missing from None
        return None


def _user(client: ApiClient, name: str) -> dict[str, Any]:
    """The user as the API shows it; rabbitmqctl's error if there is none."""
    found: dict[str, Any] = _call(
        client, "GET", f"/api/users/{segment(name)}", missing=_no_user(name)
    )
    return found


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
    user_path = f"/api/users/{segment(args.user)}" if "user" in args else ""
    if command == "add_user":
        info(f'Adding user "{args.user}" ...')
        if _call(client, "GET", user_path) is not None:
            raise CtlError(f'User "{args.user}" already exists', EX_SOFTWARE)
        _call(client, "PUT", user_path, {"password": args.new_password, "tags": ""})
        info(
            "Done. Don't forget to grant the user permissions to some virtual hosts! "
            "See 'rabbitmqctl help set_permissions' to learn more."
        )
    elif command == "delete_user":
        info(f'Deleting user "{args.user}" ...')
        _call(client, "DELETE", user_path, missing=_no_user(args.user))
    elif command == "change_password":
        info(f'Changing password for user "{args.user}" ...')
        tags = ",".join(_user(client, args.user).get("tags") or [])
        _call(client, "PUT", user_path, {"password": args.new_password, "tags": tags})
    elif command == "set_user_tags":
        info(f'Setting tags for user "{args.user}" to [{", ".join(args.tags)}] ...')
        user = _user(client, args.user)
        body = {
            "password_hash": user.get("password_hash", ""),
            "hashing_algorithm": user.get("hashing_algorithm", "rabbit_password_hashing_sha256"),
            "tags": ",".join(args.tags),
        }
        _call(client, "PUT", user_path, body)
    elif command == "add_vhost":
        info(f'Adding vhost "{args.name}" ...')
        given = (
            ("description", args.description),
            ("tags", args.tags),
            ("default_queue_type", args.default_queue_type),
        )
        meta = {key: value for key, value in given if value is not None}
        _call(client, "PUT", f"/api/vhosts/{segment(args.name)}", meta)
    elif command == "delete_vhost":
        info(f'Deleting vhost "{args.name}" ...')
        missing = _no_vhost(args.name, EX_DATAERR, quoted=True)
        _call(client, "DELETE", f"/api/vhosts/{segment(args.name)}", missing=missing)
    elif command in ("set_permissions", "clear_permissions"):
        _permissions(args, client, info)
    elif command == "list_permissions":
        info(f'Listing permissions for vhost "{vhost}" ...')
        missing = _no_vhost(vhost, EX_DATAERR, quoted=True)
        rows = _call(client, "GET", f"/api/vhosts/{segment(vhost)}/permissions", missing=missing)
        _table(args, out, ["user", "configure", "write", "read"], rows)
    elif command == "list_user_permissions":
        info(f'Listing permissions for user "{args.user}" ...')
        missing = CtlError(f'{{:no_such_user, "{args.user}"}}', EX_UNAVAILABLE)
        rows = _call(client, "GET", f"{user_path}/permissions", missing=missing)
        _table(args, out, ["vhost", "configure", "write", "read"], rows)
    else:
        raise CtlError(f"unknown command {command}", EX_SOFTWARE)
    return 0


def _permissions(args: argparse.Namespace, client: ApiClient, info: Any) -> None:
    """set_permissions / clear_permissions: rabbitmqctl's checks, then the API call."""
    vhost = args.vhost
    path = f"/api/permissions/{segment(vhost)}/{segment(args.user)}"
    if args.command == "set_permissions":
        info(f'Setting permissions for user "{args.user}" in vhost "{vhost}" ...')
    else:
        info(f'Clearing permissions for user "{args.user}" in vhost "{vhost}" ...')
    _call(client, "GET", f"/api/vhosts/{segment(vhost)}", missing=_no_vhost(vhost))
    _call(client, "GET", f"/api/users/{segment(args.user)}", missing=_no_user(args.user, False))
    if args.command == "clear_permissions":
        _call(client, "DELETE", path)  # no permission there: nothing to clear, as rabbitmqctl
        return
    body = {"configure": args.conf, "write": args.write, "read": args.read}
    try:
        _call(client, "PUT", path, body)
    except CtlError as error:  # an invalid regex
        raise CtlError(str(error), EX_UNAVAILABLE) from None
