"""``pfkit connection create | list | show | delete``."""

from __future__ import annotations

import argparse
import sys

from ._common import fail, parse_key_values, print_json


def register(groups: argparse._SubParsersAction) -> None:
    conn = groups.add_parser("connection", help="manage connections (endpoints and secrets)")
    commands = conn.add_subparsers(dest="command", metavar="COMMAND")
    conn.set_defaults(handler=lambda args: conn.print_help(sys.stderr) or 2)

    create = commands.add_parser("create", help="create or replace a connection from a YAML file")
    create.add_argument("--file", "-f", required=True, help="promptflow connection YAML")
    create.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override fields")
    create.add_argument("--name", "-n", help="connection name (overrides the file's)")
    create.set_defaults(handler=cmd_create)

    listing = commands.add_parser("list", help="list connections (secrets masked)")
    listing.set_defaults(handler=cmd_list)

    show = commands.add_parser("show", help="show one connection (secrets masked)")
    show.add_argument("--name", "-n", required=True)
    show.set_defaults(handler=cmd_show)

    delete = commands.add_parser("delete", help="delete a connection")
    delete.add_argument("--name", "-n", required=True)
    delete.set_defaults(handler=cmd_delete)
    for parser in (create, listing, show, delete):
        parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)


def _store():
    from ..connections._store import ConnectionStore

    return ConnectionStore()


def cmd_create(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..spec._yaml import load_yaml_file, plain

    path = Path(args.file)
    if not path.is_file():
        raise fail(f"connection file {args.file} does not exist")
    data = plain(load_yaml_file(path))
    if not isinstance(data, dict):
        raise fail(f"{args.file} must be a YAML mapping")
    store = _store()
    written = store.create(data, name=args.name,
                           overrides=parse_key_values(args.set, option="--set"), source=str(path))
    print_json(store.show(written.stem))
    print(f"pfkit: saved connection '{written.stem}' to {written}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = _store()
    rows = []
    for name in store.names():
        try:
            shown = store.show(name)
        except Exception as exc:  # noqa: BLE001 - a broken file is listed, not fatal
            shown = {"name": name, "error": str(exc)}
        rows.append(shown)
    print_json(rows)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print_json(_store().show(args.name))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _store().delete(args.name)
    print(f"pfkit: deleted connection '{args.name}'", file=sys.stderr)
    return 0
