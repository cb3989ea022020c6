"""The ``kbroker`` command: ``kbroker serve`` runs a broker.

``kbroker serve --broker-id N --zookeeper HOST:PORT[,...][/chroot] --listen HOST:PORT
[--advertised-url URL] [--rack R] --data-dir DIR [--config FILE.toml] [--set NAME=VALUE ...]``.
Every option may also come from a ``KBROKER_*`` environment variable or the TOML file; see
kbroker.config for the precedence and docs/operations.md for every setting.

Exit codes: 0 after a stop by SIGTERM/SIGINT, 1 when no ZooKeeper server answered within
``zookeeper.connection.timeout.ms`` (a failed start; the broker serves nothing), 2 for bad
arguments or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

import uvloop

from kbroker import __version__
from kbroker.config import ConfigError, load_broker_config
from kbroker.coordination.errors import ZooKeeperUnavailableError
from kclient.tuning import tune_gc

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kbroker", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"kbroker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a broker")
    serve.add_argument("--broker-id", type=int, help="unique broker id (broker.id)")
    serve.add_argument("--zookeeper", help="HOST:PORT[,HOST:PORT...][/chroot]")
    serve.add_argument("--listen", help="HOST:PORT for the HTTP API (default 127.0.0.1:8080)")
    serve.add_argument("--advertised-url", help="URL others use to reach this broker")
    serve.add_argument("--rack", help="rack or zone of this broker")
    serve.add_argument("--data-dir", help="directory of the partition logs")
    serve.add_argument("--config", help="TOML file of settings")
    serve.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any setting by its name, e.g. --set log.retention.ms=60000",
    )
    serve.add_argument(
        "--log-level",
        default=os.environ.get("KBROKER_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR",
    )
    return parser


def _serve(args: argparse.Namespace) -> int:
    cli: dict[str, object] = {
        "broker-id": args.broker_id,
        "zookeeper": args.zookeeper,
        "listen": args.listen,
        "advertised-url": args.advertised_url,
        "rack": args.rack,
        "data-dir": args.data_dir,
    }
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"kbroker: --set needs NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        cli[name.strip()] = value
    try:
        config = load_broker_config(
            cli=cli, env=os.environ, config_file=args.config or os.environ.get("KBROKER_CONFIG")
        )
    except ConfigError as exc:
        print(f"kbroker: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s broker-{config.broker_id} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kazoo.client").setLevel(logging.WARNING)
    from kbroker.server import Broker  # noqa: PLC0415 - keep --help fast

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        broker = Broker(config)
        gc_task = loop.create_task(_tune_gc_when_ready(broker.ready))
        await broker.run(stop)
        gc_task.cancel()

    try:
        uvloop.run(run())
    except ZooKeeperUnavailableError as exc:
        # Like Kafka's broker: no ZooKeeper within zookeeper.connection.timeout.ms is a failed
        # start (exit 1, one line), for a supervisor (systemd, Kubernetes) to retry.
        logging.getLogger("kbroker").error("cannot start: %s", exc)
        return 1
    return 0


async def _tune_gc_when_ready(ready: asyncio.Event) -> None:
    """Once serving: freeze start-up objects out of the collector's reach and collect the
    young generation less often. Produce parses many short-lived objects per request; with the
    default thresholds the collector runs every few hundred allocations (see
    docs/benchmarks.md for the measured effect)."""
    await ready.wait()
    tune_gc()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2  # pragma: no cover - argparse enforces the subcommand


if __name__ == "__main__":
    sys.exit(main())
