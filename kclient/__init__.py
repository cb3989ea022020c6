"""kclient: the Python client for kbroker (producer, consumer, admin) and the kbctl CLI."""

__version__ = "0.1.0"
