"""`amqpctl` command line: parse, run one command against the management API, exit.

Commands and output follow rabbitmqctl (users, vhosts and permissions: ctl.accounts):
`list_queues [column ...]` prints an informational line, a header and tab-separated rows
(`-q` drops the informational line, `--no-table-headers` the header, `--formatter json`
prints a JSON array instead). Errors are one `Error: ...` line on stderr with a sysexits
code (64 usage, 65 rejected request, 67 unknown user, 69 broker unreachable, 70 user
exists, 77 access refused).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import NoReturn, TextIO

from amqpd.ctl import accounts
from amqpd.ctl.client import EX_DATAERR, EX_UNAVAILABLE, EX_USAGE, ApiClient, CtlError, segment
from amqpd.ctl.listings import LISTINGS, format_value, value_of

DEFAULT_URL = "http://127.0.0.1:15672"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CtlError(f"{message} (see amqpctl --help)", EX_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="amqpctl",
        description="rabbitmqctl-style commands for amqpd (and RabbitMQ), over the "
        "management HTTP API.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("AMQPCTL_URL") or DEFAULT_URL,
        help=f"management API base URL (env AMQPCTL_URL, default {DEFAULT_URL})",
    )
    parser.add_argument(
        "-u",
        "--username",
        default=os.environ.get("AMQPCTL_USERNAME") or "guest",
        help="user (env AMQPCTL_USERNAME, default guest)",
    )
    parser.add_argument(
        "--password",
        default=os.environ.get("AMQPCTL_PASSWORD") or "guest",
        help="password (env AMQPCTL_PASSWORD, default guest)",
    )
    parser.add_argument("-p", "--vhost", default="/", help="virtual host (default /)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no informational lines")
    parser.add_argument(
        "--formatter", choices=("tsv", "json"), default="tsv", help="output format (tsv)"
    )
    parser.add_argument(
        "--no-table-headers", action="store_true", help="leave out the column header line"
    )
    parser.add_argument("-t", "--timeout", type=float, default=30.0, help="seconds (30)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for name, listing in LISTINGS.items():
        sub = commands.add_parser(name, help=f"list {listing.what}")
        sub.add_argument("columns", nargs="*", metavar="column", help=", ".join(listing.columns))
    sub = commands.add_parser("purge_queue", help="remove the ready messages of a queue")
    sub.add_argument("queue")
    sub = commands.add_parser("delete_queue", help="delete a queue")
    sub.add_argument("queue")
    sub.add_argument("--if-empty", action="store_true")
    sub.add_argument("--if-unused", action="store_true")
    sub = commands.add_parser("close_connection", help="close a connection (320)")
    sub.add_argument("connection", help="the connection name as list_connections name shows")
    sub.add_argument("reason", nargs="?", default="Closed via amqpctl")
    sub = commands.add_parser("export_definitions", help="write definitions to FILE (- = stdout)")
    sub.add_argument("file")
    sub = commands.add_parser("import_definitions", help="declare what FILE defines (- = stdin)")
    sub.add_argument("file")
    sub = commands.add_parser(
        "move_messages", help="move queued messages to another broker (confirmed, then acked)"
    )
    sub.add_argument("queues", nargs="*", metavar="queue", help="default: every non-empty queue")
    sub.add_argument("--to", required=True, metavar="AMQP_URL", help="the target broker")
    sub.add_argument(
        "--from", dest="source", metavar="AMQP_URL", help="amqpd's AMQP URL (default: from the API)"
    )
    sub.add_argument("--window", type=int, default=200, help="messages in flight (200)")
    for kind in ("policy", "operator_policy"):
        what = kind.replace("_", " ")
        sub = commands.add_parser(f"set_{kind}", help=f"set {what} (RabbitMQ's arguments)")
        sub.add_argument("name")
        sub.add_argument("pattern", help="regex matched against queue/exchange names")
        sub.add_argument("definition", help="JSON, e.g. '{\"message-ttl\": 60000}'")
        sub.add_argument("--priority", type=int, default=0)
        sub.add_argument(
            "--apply-to", default="all", choices=("all", "queues", "exchanges", "classic_queues")
        )
        sub = commands.add_parser(f"clear_{kind}", help=f"remove {what}")
        sub.add_argument("name")
    accounts.add(commands)
    commands.add_parser("status", help="broker status")
    sub = commands.add_parser("await_startup", help="wait until the broker answers")
    sub.add_argument("--wait-timeout", type=float, default=60.0, help="seconds (60)")
    return parser


def _info(args: argparse.Namespace, out: TextIO, line: str) -> None:
    if not args.quiet and args.formatter != "json":
        print(line, file=out)


def _list(args: argparse.Namespace, client: ApiClient, out: TextIO) -> int:
    listing = LISTINGS[args.command]
    columns = tuple(args.columns) or listing.defaults
    unknown = [column for column in columns if column not in listing.columns]
    if unknown:
        raise CtlError(
            f"invalid column(s) {', '.join(unknown)}; valid: {', '.join(listing.columns)}",
            EX_USAGE,
        )
    path = listing.path.replace("{vhost}", segment(args.vhost))
    if listing.per_vhost:
        shown = f'"{args.vhost}"' if listing.quoted_vhost else args.vhost
        _info(args, out, f"Listing {listing.what} for vhost {shown} ...")
    else:
        _info(args, out, f"Listing {listing.what} ...")
    items = client.get(path)
    if not listing.per_vhost and listing.what in ("connections", "channels"):
        items = [item for item in items if item.get("vhost") == args.vhost]
    rows = [[value_of(listing, item, column) for column in columns] for item in items]
    if args.formatter == "json":
        json.dump([dict(zip(columns, row, strict=True)) for row in rows], out)
        out.write("\n")
        return 0
    if not args.no_table_headers:
        print("\t".join(columns), file=out)
    for row in rows:
        print("\t".join(format_value(value) for value in row), file=out)
    return 0


def _status(args: argparse.Namespace, client: ApiClient, out: TextIO) -> int:
    overview = client.get("/api/overview")
    if args.formatter == "json":
        json.dump(overview, out)
        out.write("\n")
        return 0
    _info(args, out, f"Status of node {overview.get('node')} ...")
    totals = overview.get("object_totals", {})
    queued = overview.get("queue_totals", {})
    lines = [
        ("Product", f"{overview.get('product_name')} {overview.get('product_version')}"),
        ("Node", overview.get("node")),
        ("Connections", totals.get("connections")),
        ("Channels", totals.get("channels")),
        ("Consumers", totals.get("consumers")),
        ("Queues", totals.get("queues")),
        ("Exchanges", totals.get("exchanges")),
        ("Messages", queued.get("messages")),
        ("Messages ready", queued.get("messages_ready")),
        ("Messages unacknowledged", queued.get("messages_unacknowledged")),
    ]
    for listener in overview.get("listeners", []):
        lines.append(
            (
                "Listener",
                f"{listener.get('protocol')} on {listener.get('ip_address')}:"
                f"{listener.get('port')}",
            )
        )
    for label, value in lines:
        print(f"{label}: {format_value(value)}", file=out)
    return 0


def _await_startup(args: argparse.Namespace, client: ApiClient, out: TextIO) -> int:
    deadline = time.monotonic() + args.wait_timeout
    while True:
        try:
            client.get("/api/overview")
            return 0
        except CtlError as error:
            if error.code != EX_UNAVAILABLE or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def _run(args: argparse.Namespace, client: ApiClient, out: TextIO) -> int:
    command = args.command
    vhost = segment(args.vhost)
    if command in LISTINGS:
        return _list(args, client, out)
    if command in accounts.COMMANDS:
        return accounts.run(args, client, out, lambda line: _info(args, out, line))
    if command == "purge_queue":
        _info(args, out, f"Purging queue '{args.queue}' in vhost '{args.vhost}' ...")
        client.request("DELETE", f"/api/queues/{vhost}/{segment(args.queue)}/contents")
        return 0
    if command == "delete_queue":
        _info(args, out, f"Deleting queue '{args.queue}' on vhost '{args.vhost}' ...")
        query = "&".join(
            flag
            for flag, wanted in (
                ("if-empty=true", args.if_empty),
                ("if-unused=true", args.if_unused),
            )
            if wanted
        )
        path = f"/api/queues/{vhost}/{segment(args.queue)}" + (f"?{query}" if query else "")
        client.request("DELETE", path)
        return 0
    if command == "close_connection":
        _info(args, out, f"Closing connection {args.connection}, reason: {args.reason}...")
        client.request(
            "DELETE",
            f"/api/connections/{segment(args.connection)}",
            headers={"X-Reason": args.reason},
        )
        return 0
    if command == "export_definitions":
        definitions = client.get("/api/definitions")
        text = json.dumps(definitions, indent=2)
        if args.file == "-":
            print(text, file=out)
        else:
            _info(args, out, f"Exporting definitions to {args.file} ...")
            with open(args.file, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return 0
    if command == "import_definitions":
        try:
            if args.file == "-":
                data = json.load(sys.stdin)
            else:
                with open(args.file, encoding="utf-8") as handle:
                    data = json.load(handle)
        except OSError as error:
            raise CtlError(
                f"cannot read {args.file}: {error.strerror or error}", EX_DATAERR
            ) from None
        except ValueError as error:
            raise CtlError(f"{args.file} is not valid JSON: {error}", EX_DATAERR) from None
        _info(args, out, f"Importing definitions from {args.file} ...")
        client.request("POST", "/api/definitions", data)
        return 0
    if command == "move_messages":
        from amqpd.ctl import move

        source = args.source or move.source_url(
            client, args.url, args.username, args.password, args.vhost
        )
        return move.move_messages(
            client, args.vhost, args.queues, source, args.to, max(1, args.window)
        )
    if command in ("set_policy", "set_operator_policy", "clear_policy", "clear_operator_policy"):
        return _policy(args, client, out)
    if command == "status":
        return _status(args, client, out)
    if command == "await_startup":
        return _await_startup(args, client, out)
    raise CtlError(f"unknown command {command}", EX_USAGE)


def _policy(args: argparse.Namespace, client: ApiClient, out: TextIO) -> int:
    """set_/clear_(operator_)policy, with rabbitmqctl's wording of what is being done."""
    operator = "operator" in args.command
    path = f"/api/{'operator-policies' if operator else 'policies'}/{segment(args.vhost)}"
    path += f"/{segment(args.name)}"
    if args.command.startswith("clear"):
        what = "operator policy" if operator else "policy"
        _info(args, out, f'Clearing {what} "{args.name}" on vhost "{args.vhost}" ...')
        client.request("DELETE", path)
        return 0
    try:
        definition = json.loads(args.definition)
    except ValueError as error:
        raise CtlError(f"definition is not valid JSON: {error}", EX_USAGE) from None
    what = "operator policy override" if operator else "policy"
    _info(
        args,
        out,
        f'Setting {what} "{args.name}" for pattern "{args.pattern}" to "{args.definition}" '
        f'with priority "{args.priority}" for vhost "{args.vhost}" ...',
    )
    body = {
        "pattern": args.pattern,
        "definition": definition,
        "priority": args.priority,
        "apply-to": args.apply_to,
    }
    client.request("PUT", path, body)
    return 0


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        client = ApiClient(args.url, args.username, args.password, args.timeout)
        return _run(args, client, out)
    except CtlError as error:
        print(f"Error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
