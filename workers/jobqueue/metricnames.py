"""Every Prometheus metric name of jobqueue-operator, worker and operator alike.

This module is the vocabulary shared by the code that emits the metrics, the generated
Grafana dashboards and the generated alert rules (tests check that those use no other
name). Rename a metric here and everything follows; never spell a metric name elsewhere.

Label conventions: ``queue`` is the RQ queue name; operator-side series also carry
``namespace`` and ``jobqueue`` (the JobQueue object's name).
"""

from typing import Final

PREFIX: Final = "jobqueue"

# --- emitted by the worker runtime (`jobqueue worker`, port 9100); labels: queue, function
JOBS_STARTED: Final = f"{PREFIX}_jobs_started_total"
JOBS_SUCCEEDED: Final = f"{PREFIX}_jobs_succeeded_total"
JOBS_FAILED: Final = f"{PREFIX}_jobs_failed_total"  # failed for good: no attempts left
JOBS_RETRIED: Final = f"{PREFIX}_jobs_retried_total"  # an attempt failed, another is scheduled
JOBS_TIMED_OUT: Final = f"{PREFIX}_jobs_timed_out_total"
JOBS_REJECTED: Final = f"{PREFIX}_jobs_rejected_total"  # payload refused: unregistered function, bad JSON
JOB_RUN_SECONDS: Final = f"{PREFIX}_job_run_seconds"  # histogram: started -> ended
JOB_WAIT_SECONDS: Final = f"{PREFIX}_job_wait_seconds"  # histogram: enqueued (or due) -> started
WORKER_BUSY_SLOTS: Final = f"{PREFIX}_worker_busy_slots"  # gauge, labels: queue
WORKER_SLOTS: Final = f"{PREFIX}_worker_slots"  # gauge, labels: queue

# --- emitted by the operator (port 8080); labels: namespace, jobqueue, queue (+ as noted)
QUEUE_JOBS: Final = f"{PREFIX}_queue_jobs"  # gauge, + state=queued|scheduled|running|failed
QUEUE_OLDEST_JOB_AGE_SECONDS: Final = f"{PREFIX}_queue_oldest_job_age_seconds"
QUEUE_WORKERS: Final = f"{PREFIX}_queue_workers"  # gauge, + state=busy|idle
DESIRED_REPLICAS: Final = f"{PREFIX}_desired_replicas"
REPLICAS: Final = f"{PREFIX}_replicas"
READY_REPLICAS: Final = f"{PREFIX}_ready_replicas"
SCALING_DECISIONS: Final = f"{PREFIX}_scaling_decisions_total"  # + direction=up|down, reason
LOST_JOBS_RECOVERED: Final = f"{PREFIX}_lost_jobs_recovered_total"  # + outcome=requeued|failed
POLL_DURATION_SECONDS: Final = f"{PREFIX}_poll_duration_seconds"  # histogram, labels: redis
POLL_ERRORS: Final = f"{PREFIX}_poll_errors_total"  # labels: redis
REDIS_UP: Final = f"{PREFIX}_redis_up"  # gauge 1/0, labels: redis
AUTOSCALER_CYCLE_SECONDS: Final = f"{PREFIX}_autoscaler_cycle_seconds"  # histogram: one pass over all queues
AUTOSCALER_API_ERRORS: Final = f"{PREFIX}_autoscaler_api_errors_total"  # + action=scale|annotate|status|event
RECONCILE_TOTAL: Final = f"{PREFIX}_reconcile_total"  # labels: kind, result=ok|error
RECONCILE_SECONDS: Final = f"{PREFIX}_reconcile_seconds"  # histogram, labels: kind
ORPHANED_SETTINGS_REMOVED: Final = f"{PREFIX}_orphaned_settings_removed_total"  # settings sweep
OPERATOR_INFO: Final = f"{PREFIX}_operator_info"  # gauge 1, labels: version
JOBS_EXHAUSTED: Final = f"{PREFIX}_jobs_exhausted_total"  # failed for good, every cause (operator's count)
FAILURE_NOTIFICATIONS: Final = f"{PREFIX}_failure_notifications_total"  # + channel=job|webhook, outcome
OPERATOR_LEADER: Final = f"{PREFIX}_operator_leader"  # gauge 1 on the Lease holder, 0 standing by; + lease
OPERATOR_SHARDS_HELD: Final = f"{PREFIX}_operator_shards_held"  # gauge: autoscaler shards this replica holds
OPERATOR_SHARD_MEMBERS: Final = (
    f"{PREFIX}_operator_shard_members"  # gauge: replicas sharing the shards (its view)
)
