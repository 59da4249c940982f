"""The metric-name vocabulary check shared by the monitoring tests: which identifiers in a
PromQL expression are metric names, and whether jobqueue.metricnames defines them. Import as
``from unit.monitoring import vocabulary``."""

from __future__ import annotations

import re

from jobqueue import metricnames

#: every metric name the project defines (the only names dashboards and rules may use)
NAMES = {v for k, v in vars(metricnames).items() if k.isupper() and k != "PREFIX" and isinstance(v, str)}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names_in(expr: str) -> set[str]:
    """Identifiers that look like our metrics (the prefix followed by `_`), as written; label
    values in quotes are skipped."""
    unquoted = re.sub(r'"[^"]*"', '""', expr)
    return set(re.findall(rf"\b{metricnames.PREFIX}_[a-z0-9_]+\b", unquoted))


def known(name: str) -> bool:
    return name in NAMES or any(
        name.endswith(s) and name.removesuffix(s) in NAMES for s in HISTOGRAM_SUFFIXES
    )


def base_names_in(expr: str) -> set[str]:
    """The defined metric names an expression reads (histogram series mapped to their base)."""
    out = set()
    for name in metric_names_in(expr):
        for suffix in ("", *HISTOGRAM_SUFFIXES):
            if name.endswith(suffix) and name.removesuffix(suffix) in NAMES:
                out.add(name.removesuffix(suffix))
                break
    return out
