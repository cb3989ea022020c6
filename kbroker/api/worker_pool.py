"""Starting and supervising a broker's HTTP worker processes (``num.http.workers``).

Each worker is ``python -m kbroker.api.worker SOCKET PARENT_PID`` (see
:mod:`kbroker.api.worker`), given the broker's configuration as JSON on stdin. A worker that
exits while the broker runs is started again after a short pause; :meth:`WorkerPool.stop`
asks every worker to finish its requests (SIGTERM) and kills those still running after the
grace period.

Concurrency: every method runs on the broker's event loop; one supervising task per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Final

import orjson

from kbroker.config import BrokerConfig

__all__ = ["WorkerPool", "worker_link_path", "worker_socket_path"]

log = logging.getLogger(__name__)

#: Pause before restarting a worker that exited.
RESTART_PAUSE_S: Final = 1.0
#: How long a stopping worker may take to finish its requests.
STOP_GRACE_S: Final = 5.0


def worker_socket_path(config: BrokerConfig) -> Path:
    """The Unix socket on which the broker serves its workers (in its data directory)."""
    return Path(config.data_dir) / "http-workers.sock"


def worker_link_path(config: BrokerConfig) -> Path:
    """The Unix socket of the broker's lean link for its workers' hot calls
    (kbroker.api.worker_link), beside :func:`worker_socket_path`."""
    return Path(config.data_dir) / "http-workers.link"


class WorkerPool:
    """``config.num_http_workers`` worker processes, kept running until :meth:`stop`."""

    def __init__(self, config: BrokerConfig) -> None:
        self._config = config
        self._socket = worker_socket_path(config)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._processes: dict[int, asyncio.subprocess.Process] = {}

    def start(self) -> None:
        for index in range(self._config.num_http_workers):
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    self._supervise(index), name=f"http-worker-{index}"
                )
            )

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        return [p.pid for p in self._processes.values() if p.returncode is None]

    async def _supervise(self, index: int) -> None:
        settings = orjson.dumps(dataclasses.asdict(self._config))
        while not self._stopping.is_set():
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "kbroker.api.worker",
                str(self._socket),
                str(os.getpid()),
                stdin=asyncio.subprocess.PIPE,
            )
            self._processes[index] = process
            assert process.stdin is not None
            process.stdin.write(settings)
            process.stdin.close()
            code = await process.wait()
            if self._stopping.is_set():
                return
            log.warning(
                "HTTP worker %d (pid %d) exited with %s; restarting it", index, process.pid, code
            )
            await asyncio.sleep(RESTART_PAUSE_S)

    def stop_listening(self) -> None:
        """Ask every worker to stop accepting connections (SIGUSR1) and to close the open ones
        after their current answer: the broker is draining."""
        for process in self._processes.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGUSR1)

    async def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after the grace period)."""
        self._stopping.set()
        running = [p for p in self._processes.values() if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), STOP_GRACE_S)
        except TimeoutError:
            for process in running:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
