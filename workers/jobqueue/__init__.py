"""jobqueue: the data plane of jobqueue-operator — job registration, the worker runtime,
the enqueue client and the ``jobqueue`` CLI.

The public surface is what application code needs; the operator additionally uses the
modules :mod:`jobqueue.settings`, :mod:`jobqueue.stats` and :mod:`jobqueue.recovery`
(docs/architecture.md). Everything else is internal.

.. code-block:: python

    from jobqueue import job, enqueue

    @job
    def update_ei(fleet_id: str, new_ei: float) -> None: ...

    enqueue("ei:update", update_ei, "fleet-7", 93.5, job_id="ei-fleet-7-1700000000", priority=1)
"""

# first, before the heavy imports: SIGTERM must work from the CLI's first moment (see _pid1)
from jobqueue import _pid1  # noqa: F401  (imported for its effect)
from jobqueue.client import (
    EnqueueResult,
    JobInfo,
    JobSpec,
    cancel,
    enqueue,
    enqueue_flow,
    enqueue_many,
    get_job,
    queue_stats,
    remove,
    retry,
    wait,
)
from jobqueue.context import JobContext, current_job, update_progress
from jobqueue.errors import InvalidJobError, JobQueueError, JobStateError, RegistrationError, UnknownJobError
from jobqueue.registry import job
from jobqueue.settings import UnknownQueueError

__version__ = "0.1.0"

__all__ = [
    "EnqueueResult",
    "InvalidJobError",
    "JobContext",
    "JobInfo",
    "JobQueueError",
    "JobSpec",
    "JobStateError",
    "RegistrationError",
    "UnknownJobError",
    "UnknownQueueError",
    "__version__",
    "cancel",
    "current_job",
    "enqueue",
    "enqueue_flow",
    "enqueue_many",
    "get_job",
    "job",
    "queue_stats",
    "remove",
    "retry",
    "update_progress",
    "wait",
]
