"""The asyncio clients: :class:`Producer`, :class:`Consumer` and :class:`Admin`.

These are the real implementations; :mod:`kclient`'s synchronous classes run them on a private
event-loop thread.
"""

from kclient.aio.admin import Admin
from kclient.aio.consumer import Consumer, RebalanceListener
from kclient.aio.producer import Producer

__all__ = ["Admin", "Consumer", "Producer", "RebalanceListener"]
