"""kbctl: the command line for a kbroker cluster (installed with kclient).

``kbctl [--bootstrap URLS] [--output table|json] COMMAND ...``; the brokers come from
``--bootstrap`` (comma-separated URLs) or ``KBROKER_URL``. Exit codes: 0 success, 1 the cluster
refused or failed the request, 2 bad arguments, 3 no broker reachable, 130 interrupted.

This module only builds the argument parser (so ``--help`` stays fast); commands import the
client when they run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Final

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_UNREACHABLE", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130

_EPILOG: Final = """\
exit codes: 0 ok, 1 the cluster failed the request, 2 bad arguments, 3 no broker reachable
environment: KBROKER_URL (brokers, when --bootstrap is not given), NO_COLOR
"""


class UsageError(Exception):
    """Bad arguments found after parsing (exit code 2)."""


def _common() -> argparse.ArgumentParser:
    """Options accepted before or after the command (``kbctl -o json topics list`` or
    ``kbctl topics list -o json``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-b",
        "--bootstrap",
        default=argparse.SUPPRESS,
        metavar="URLS",
        help="comma-separated broker URLs (default: $KBROKER_URL)",
    )
    common.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=argparse.SUPPRESS,
        help="table for people (default), json for scripts",
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="request timeout (default 30)",
    )
    return common


def _add(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: str,
    help_text: str,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        parents=[common],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def _topics(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    topics = sub.add_parser("topics", help="list, create, describe, alter and delete topics")
    tsub = topics.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = _add(tsub, "list", "admin:topics_list", "list topics with partition counts", common)
    lst.add_argument("--internal", action="store_true", help="include internal topics")
    create = _add(tsub, "create", "admin:topics_create", "create a topic", common)
    create.add_argument("topic")
    create.add_argument("-p", "--partitions", type=int, help="partition count (broker default)")
    create.add_argument(
        "-r", "--replication-factor", type=int, help="replicas per partition (broker default)"
    )
    create.add_argument(
        "-c", "--config", action="append", default=[], metavar="NAME=VALUE", help="topic config"
    )
    create.add_argument("--if-not-exists", action="store_true", help="succeed if it exists")
    create.add_argument("--validate-only", action="store_true", help="check, create nothing")
    describe = _add(tsub, "describe", "admin:topics_describe", "partitions and configs", common)
    describe.add_argument("topic")
    describe.add_argument("--all-configs", action="store_true", help="defaults too")
    alter = _add(tsub, "alter", "admin:topics_alter", "add partitions or change configs", common)
    alter.add_argument("topic")
    alter.add_argument("-p", "--partitions", type=int, help="new (larger) partition count")
    alter.add_argument(
        "-c", "--config", action="append", default=[], metavar="NAME=VALUE", help="set a config"
    )
    alter.add_argument(
        "-d",
        "--delete-config",
        action="append",
        default=[],
        metavar="NAME",
        help="reset a config to its default",
    )
    delete = _add(tsub, "delete", "admin:topics_delete", "delete a topic", common)
    delete.add_argument("topic")
    delete.add_argument("--if-exists", action="store_true", help="succeed if it does not exist")


def _io(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    produce = _add(sub, "produce", "io:produce", "produce lines of stdin (or a file)", common)
    produce.add_argument("topic")
    produce.add_argument("-f", "--file", help="read lines from this file instead of stdin")
    produce.add_argument(
        "-k",
        "--key-separator",
        metavar="SEP",
        help="split each line at the first SEP into key and value",
    )
    produce.add_argument("--acks", choices=("0", "1", "all"), default="all")
    produce.add_argument("-p", "--partition", type=int, help="send every record to this partition")
    produce.add_argument("-H", "--header", action="append", default=[], metavar="KEY=VALUE")
    produce.add_argument("--linger-ms", type=float, default=5)
    consume = _add(sub, "consume", "io:consume", "print records of a topic", common)
    consume.add_argument("topic")
    consume.add_argument(
        "-g", "--group", help="consume as a member of GROUP (commits); default: a groupless tail"
    )
    consume.add_argument("--from-beginning", action="store_true", help="start at the log start")
    consume.add_argument("--offset", type=int, help="start at this offset (needs --partition)")
    consume.add_argument("-p", "--partition", type=int, action="append", help="only these")
    consume.add_argument("-F", "--follow", action="store_true", help="wait for new records")
    consume.add_argument("-n", "--max", type=int, metavar="N", help="stop after N records")
    consume.add_argument(
        "--format",
        default="{value}",
        metavar="TEMPLATE",
        help="line template with {topic} {partition} {offset} {timestamp} {key} {value} "
        "{headers} (default {value})",
    )
    consume.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="without --follow: give up after this long without progress (default 10)",
    )


def _groups(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    groups = sub.add_parser("groups", help="consumer groups: list, describe, reset offsets")
    gsub = groups.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add(gsub, "list", "admin:groups_list", "list consumer groups", common)
    describe = _add(gsub, "describe", "admin:groups_describe", "members, assignment, lag", common)
    describe.add_argument("group")
    reset = _add(
        gsub, "reset-offsets", "admin:groups_reset", "move an empty group's offsets", common
    )
    reset.add_argument("group")
    reset.add_argument("-t", "--topic", required=True)
    reset.add_argument("-p", "--partition", type=int, action="append", help="only these")
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true")
    to.add_argument("--to-latest", action="store_true")
    to.add_argument("--to-offset", type=int, metavar="N")
    to.add_argument("--to-timestamp", type=int, metavar="MS", help="epoch milliseconds")
    to.add_argument("--to-datetime", metavar="ISO", help="e.g. 2024-05-01T12:00:00Z")


def _perf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    perf = sub.add_parser("perf", help="producer and consumer throughput tests")
    psub = perf.add_subparsers(dest="action", metavar="ACTION", required=True)
    produce = _add(psub, "produce", "perf:produce", "like kafka-producer-perf-test", common)
    produce.add_argument("topic")
    produce.add_argument("-n", "--num-records", type=int, default=1_000_000)
    produce.add_argument("-s", "--record-size", type=int, default=100, metavar="BYTES")
    produce.add_argument(
        "--throughput", type=float, default=-1, metavar="REC/S", help="cap (-1: unlimited)"
    )
    produce.add_argument("--acks", choices=("0", "1", "all"), default="1")
    produce.add_argument("--batch-size", type=int, default=512 * 1024, metavar="BYTES")
    produce.add_argument("--linger-ms", type=float, default=5)
    produce.add_argument(
        "--keys", action="store_true", help="keyed records (murmur2) instead of sticky"
    )
    consume = _add(psub, "consume", "perf:consume", "like kafka-consumer-perf-test", common)
    consume.add_argument("topic")
    consume.add_argument("-n", "--num-records", type=int, default=1_000_000)
    consume.add_argument("-g", "--group", help="consume in this group (default: no group)")
    consume.add_argument("--fetch-max-bytes", type=int, default=8 << 20, metavar="BYTES")
    consume.add_argument("--max-poll-records", type=int, default=10_000)


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="kbctl",
        description="Command line for a kbroker cluster.",
        parents=[common],
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add(sub, "cluster", "admin:cluster", "brokers, controller, unhealthy partitions", common)
    _topics(sub, common)
    _io(sub, common)
    _groups(sub, common)
    _perf(sub, common)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run kbctl; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.bootstrap = getattr(args, "bootstrap", None) or os.environ.get("KBROKER_URL", "")
    args.output = getattr(args, "output", None) or "table"
    args.timeout = getattr(args, "timeout", 30.0)
    if args.timeout <= 0:
        parser.print_usage(sys.stderr)
        print("kbctl: error: --timeout must be > 0 seconds", file=sys.stderr)
        return EXIT_USAGE
    if not args.bootstrap.strip():
        parser.print_usage(sys.stderr)
        print("kbctl: error: no brokers: pass --bootstrap URLS or set KBROKER_URL", file=sys.stderr)
        return EXIT_USAGE
    module_name, _, function = args.handler.partition(":")
    module = importlib.import_module(f"kclient.cli._{module_name}")
    from kclient.errors import BrokerUnavailableError, KClientError  # noqa: PLC0415 (fast --help)
    from kclient.tuning import tune_gc  # noqa: PLC0415

    tune_gc()  # perf consume: 1.5x records/s (kclient/tuning.py)
    # SIGTERM (a service manager, `kill`) stops a command as Ctrl-C does, so that a consumer
    # still commits what it printed and leaves its group instead of lingering in it until its
    # session times out.
    signal.signal(signal.SIGTERM, _interrupt)

    try:
        code: int = getattr(module, function)(args)
        return code
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"kbctl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokerUnavailableError as exc:
        print(f"kbctl: cannot reach the cluster at {args.bootstrap}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KClientError as exc:
        print(f"kbctl: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (kbctl consume | head)
        return EXIT_OK
