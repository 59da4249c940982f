"""Pure functions from a JobQueue (or RecurringJob) to what the operator writes: Kubernetes
manifests as plain dicts, the settings published in Redis, and the status.

No I/O and no clock of their own (``now`` is a parameter), so each is covered by unit and
golden tests; the reconcile layer only moves their results over the wire.
"""

from jobqueue_operator.builders import deployment, names, published, redissecret, status

__all__ = ["deployment", "names", "published", "redissecret", "status"]
