"""The admin HTTP API and the jobs web UI of jobqueue-operator (``jobqueue api``).

Workers and producers never import it (``.importlinter``), so they never load FastAPI.
:func:`create_app` builds the application; ``docs/admin.md`` documents every endpoint and
the authentication, and ``docs/openapi.json`` is generated from the code
(``python -m jobqueue.api.openapi``).
"""

from jobqueue.api.app import create_app

__all__ = ["create_app"]
