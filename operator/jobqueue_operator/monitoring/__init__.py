"""Dashboards and alert rules as code.

The Grafana dashboard (:mod:`.dashboards`, built with grafana-foundation-sdk) and the
Prometheus alert rules (:mod:`.alerts`) are generated from one vocabulary — the metric names
of :mod:`jobqueue.metricnames` — and one set of thresholds (:mod:`.config`). The generated
files are checked in (``manifests/monitoring/`` and the chart's ``files/``); a test
regenerates them and fails on drift. Run ``python -m jobqueue_operator.monitoring`` (or
``make generate``) after changing anything here.

This package is a build-time tool: the operator never imports it, and the SDK it needs comes
with the ``monitoring`` extra.
"""

__all__: list[str] = []
