"""Reading the generated Grafana dashboard in tests (unit and chart integration)."""

from __future__ import annotations


def panel_queries(board: dict[str, object]) -> dict[str, list[str]]:
    """Every PromQL expression of a dashboard's JSON, by panel title."""
    out: dict[str, list[str]] = {}
    panels = board.get("panels", [])
    assert isinstance(panels, list)
    for panel in panels:
        targets = panel.get("targets") or []
        if targets:
            out[panel["title"]] = [t["expr"] for t in targets]
    return out
