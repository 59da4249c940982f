"""jobqueue: the data plane of jobqueue-operator — job registration, the worker runtime,
the enqueue client and the ``jobqueue`` CLI."""

__version__ = "0.1.0"

__all__ = ["__version__"]
