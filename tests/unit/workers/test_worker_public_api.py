"""The public surface of ``jobqueue`` is small and deliberate (style.md rule 1)."""

import jobqueue

EXPECTED = {
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
}


def test_all_is_exactly_the_public_api() -> None:
    assert set(jobqueue.__all__) == EXPECTED
    assert len(jobqueue.__all__) == len(EXPECTED)


def test_every_exported_name_exists() -> None:
    for name in jobqueue.__all__:
        assert getattr(jobqueue, name) is not None, name


def test_errors_share_one_base() -> None:
    for name in (
        "InvalidJobError",
        "JobStateError",
        "RegistrationError",
        "UnknownJobError",
        "UnknownQueueError",
    ):
        assert issubclass(getattr(jobqueue, name), jobqueue.JobQueueError), name
    assert issubclass(jobqueue.UnknownQueueError, LookupError)
    assert issubclass(jobqueue.UnknownJobError, LookupError)
    assert issubclass(jobqueue.InvalidJobError, ValueError)


def test_importing_jobqueue_does_not_import_prometheus_client() -> None:
    # The worker must pick prometheus_client's multiprocess mode before its first import.
    import subprocess
    import sys

    code = "import sys, jobqueue, jobqueue.cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
