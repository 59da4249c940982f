"""The exceptions of the ``jobqueue`` package, in one place.

Every error a producer, the CLI or the operator can meet derives from :class:`JobQueueError`,
so callers can catch the family without catching programming errors. Each one carries the
names it is about (queue, job id) and a message meant to be shown to a person as is::

    JobQueueError
    ├── UnknownQueueError (LookupError)   no JobQueue publishes this queue (settings.py)
    ├── UnknownJobError (LookupError)     no such job id in this queue
    ├── InvalidJobError (ValueError)      a job that cannot be enqueued: bad id, options,
    │                                     function name, or arguments that are not JSON
    ├── JobStateError                     the job exists but the operation does not fit its
    │                                     state (retry a running job, remove a running job)
    └── RegistrationError                 misuse of ``@job`` or of the worker's allow-list

Errors of a *running* job (the job's own exception, a timeout, a payload the worker refuses)
are not raised to anyone: they become the job's failure reason, readable with
:func:`jobqueue.get_job`.
"""

from __future__ import annotations


class JobQueueError(Exception):
    """Base class of every error raised by :mod:`jobqueue`."""


class UnknownJobError(JobQueueError, LookupError):
    def __init__(self, queue_name: str, job_id: str, detail: str = "") -> None:
        msg = f"no job {job_id!r} in queue {queue_name!r}"
        if detail:
            msg += f" ({detail})"
        else:
            msg += " (never enqueued, removed, or past its keepCompleted/keepFailed retention)"
        super().__init__(msg)
        self.queue_name = queue_name
        self.job_id = job_id


class InvalidJobError(JobQueueError, ValueError):
    """The job cannot be enqueued as given; the message says which part is wrong."""


class JobStateError(JobQueueError):
    def __init__(self, queue_name: str, job_id: str, status: str, message: str) -> None:
        super().__init__(message)
        self.queue_name = queue_name
        self.job_id = job_id
        self.status = status


class RegistrationError(JobQueueError):
    """``@job`` was used on something that cannot be a job, or an import is not allowed."""
