"""A private event loop on its own thread: what the synchronous facades run on.

Each sync client object (``kclient.Producer``, ``kclient.Consumer``, ``kclient.Admin``) owns one
:class:`LoopThread` and runs its asyncio implementation there. Calls from the user's threads
block on ``run_coroutine_threadsafe``; a call from the loop thread itself (inside a callback)
would deadlock and raises instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from kclient.errors import ClientTimeoutError, ClosedError

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """An event loop running forever on a daemon thread until :meth:`stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._ready.wait()
        self._stopped = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    @property
    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._stopped:
            coro.close()
            raise ClosedError("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (ClientTimeoutError on timeout)."""
        if self.on_loop_thread:
            coro.close()
            raise RuntimeError(
                "a blocking kclient call was made on the client's own event loop thread "
                "(from a callback?); it would deadlock"
            )
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ClientTimeoutError(f"the operation did not complete within {timeout} s") from None
        except BaseException:
            future.cancel()
            raise

    def run_or_stop(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`run`, stopping the loop when ``coro`` fails: how a sync client starts its
        asyncio implementation (no thread is left behind when that start fails)."""
        try:
            return self.run(coro)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.on_loop_thread:
            self.thread.join(timeout=10)
