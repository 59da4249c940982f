"""jobqueue-operator: reconciles ``JobQueue`` and ``RecurringJob`` resources into RQ worker
Deployments and CronJobs, and scales the workers by each queue's real backlog.

The operator is started with ``python -m jobqueue_operator`` (or the ``jobqueue-operator``
console script). Everything else in this package is internal.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
