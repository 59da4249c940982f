"""``python -m jobqueue.api.openapi [PATH]``: the API's OpenAPI document, from the code.

``make generate`` writes it to ``docs/openapi.json``; a unit test fails when the checked-in
file differs from what the code generates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jobqueue.api import app as api_app
from jobqueue.api import auth


class _Never:
    """A Redis stand-in for building the schema: building it touches no server."""


def document() -> dict[str, Any]:
    application = api_app.create_app(connection=_Never(), authorizer=auth.NoAuth())  # type: ignore[arg-type]
    return application.openapi()


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/openapi.json")
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
