"""The Grafana dashboard of jobqueue-operator, built with grafana-foundation-sdk.

One small function per panel (the SDK's red-method example style). Queries use only names
from :mod:`jobqueue.metricnames`; queue panels are filtered by the ``$namespace`` and
``$queue`` variables (whose "All" value is ``.*``, so series without a ``namespace`` label,
as a plain static scrape of a worker gives, still match). Operator-health panels are not
filtered: they describe the operator and its Redis connections, not one queue.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models

from jobqueue import metricnames as m
from jobqueue_operator.monitoring import config

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Selector of every queue-level panel.
SEL = 'namespace=~"$namespace", queue=~"$queue"'
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)

Panel = timeseries.Panel | stat.Panel


def query(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)


def _ts(
    title: str, description: str, unit: str, *targets: prometheus.Dataquery, width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .span(width)
        .height(8)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI))
    )
    for letter, target in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(target.ref_id(letter))
    return panel


def _stat(title: str, description: str, unit: str, expr: str, legend: str) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(6)
        .height(4)
        .graph_mode(common.BigValueGraphMode.AREA)
        .with_target(query(expr, legend).instant())
    )


def _threshold_line(panel: timeseries.Panel, value: float) -> timeseries.Panel:
    """Draw an alert threshold as a dashed red line."""
    return panel.thresholds(
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=None, color="green"), models.Threshold(value=value, color="red")])
    ).thresholds_style(
        common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
    )


def _bars(panel: timeseries.Panel) -> timeseries.Panel:
    return (
        panel.draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )


def _quantiles(histogram: str) -> list[prometheus.Dataquery]:
    return [
        query(
            f"histogram_quantile({q}, sum by (queue, le) (rate({histogram}_bucket{{{SEL}}}[{RATE}])))",
            f"{{{{queue}}}} p{round(q * 100)}",
        )
        for q in QUANTILES
    ]


# --- overview ---------------------------------------------------------------------------


def queued_now() -> stat.Panel:
    return _stat(
        "Queued",
        "Jobs waiting in the selected queues.",
        "short",
        f'sum({m.QUEUE_JOBS}{{{SEL}, state="queued"}})',
        "queued",
    )


def running_now() -> stat.Panel:
    return _stat(
        "Running",
        "Jobs being run right now.",
        "short",
        f'sum({m.QUEUE_JOBS}{{{SEL}, state="running"}})',
        "running",
    )


def oldest_now() -> stat.Panel:
    return _stat(
        "Oldest queued job",
        "Age of the oldest waiting job, any selected queue.",
        "s",
        f"max({m.QUEUE_OLDEST_JOB_AGE_SECONDS}{{{SEL}}})",
        "oldest",
    )


def ready_workers_now() -> stat.Panel:
    return _stat(
        "Ready worker pods",
        "Ready worker pods of the selected queues.",
        "short",
        f"sum({m.READY_REPLICAS}{{{SEL}}})",
        "ready",
    )


# --- backlog ----------------------------------------------------------------------------


def depth_by_state() -> timeseries.Panel:
    return _ts(
        "Jobs by state",
        "Queued, scheduled (delayed or waiting for a retry), running and failed jobs per queue, "
        "as the operator reads them from Redis every second.",
        "short",
        query(f"sum by (queue, state) ({m.QUEUE_JOBS}{{{SEL}}})", "{{queue}} {{state}}"),
    )


def oldest_job_age() -> timeseries.Panel:
    limit = config.CONFIG["thresholds"]["oldest_job_too_old"]["max_age_seconds"]
    return _threshold_line(
        _ts(
            "Oldest queued job age",
            f"How long the oldest waiting job has waited; the dashed line is the alert threshold ({limit} s).",
            "s",
            query(f"max by (queue) ({m.QUEUE_OLDEST_JOB_AGE_SECONDS}{{{SEL}}})", "{{queue}}"),
        ),
        limit,
    )


# --- throughput and errors --------------------------------------------------------------


def throughput() -> timeseries.Panel:
    return _ts(
        "Throughput",
        "Jobs started and jobs that succeeded, per second.",
        "ops",
        query(f"sum by (queue) (rate({m.JOBS_STARTED}{{{SEL}}}[{RATE}]))", "{{queue}} started"),
        query(f"sum by (queue) (rate({m.JOBS_SUCCEEDED}{{{SEL}}}[{RATE}]))", "{{queue}} succeeded"),
    )


def failures_and_retries() -> timeseries.Panel:
    return _ts(
        "Failures and retries",
        "Per second: jobs failed for good (no attempts left), attempts that failed and were "
        "scheduled for a retry, attempts that hit their timeout, and payloads refused by the "
        "worker (unregistered function, bad JSON).",
        "ops",
        query(f"sum by (queue) (rate({m.JOBS_FAILED}{{{SEL}}}[{RATE}]))", "{{queue}} failed"),
        query(f"sum by (queue) (rate({m.JOBS_RETRIED}{{{SEL}}}[{RATE}]))", "{{queue}} retried"),
        query(f"sum by (queue) (rate({m.JOBS_TIMED_OUT}{{{SEL}}}[{RATE}]))", "{{queue}} timed out"),
        query(f"sum by (queue) (rate({m.JOBS_REJECTED}{{{SEL}}}[{RATE}]))", "{{queue}} rejected"),
    )


def exhausted_and_notified() -> timeseries.Panel:
    return _bars(
        _ts(
            "Failed for good, and notifications",
            "Jobs that failed with no attempt left, every cause (the operator's count, from the "
            "failure stream), and the failure notifications (spec.failureNotification) sent or not "
            "delivered, by channel.",
            "short",
            query(
                f"sum by (queue) (increase({m.JOBS_EXHAUSTED}{{{SEL}}}[{RATE}]))", "{{queue}} failed for good"
            ),
            query(
                f"sum by (queue, channel, outcome) (increase({m.FAILURE_NOTIFICATIONS}{{{SEL}}}[{RATE}]))",
                "{{queue}} {{channel}} {{outcome}}",
            ),
        )
    )


# --- latency ----------------------------------------------------------------------------


def wait_time() -> timeseries.Panel:
    return _ts(
        "Wait time (queued → started)",
        "p50, p95 and p99 of the time jobs waited: from enqueue (or from when a delayed "
        "job became due) until a worker started them.",
        "s",
        *_quantiles(m.JOB_WAIT_SECONDS),
    )


def run_time() -> timeseries.Panel:
    return _ts(
        "Run time",
        "p50, p95 and p99 of job run time (one attempt, started → ended).",
        "s",
        *_quantiles(m.JOB_RUN_SECONDS),
    )


# --- workers and scaling ----------------------------------------------------------------


def workers_desired_vs_ready() -> timeseries.Panel:
    return _ts(
        "Worker pods: desired vs ready",
        "Replicas the autoscaler wants, replicas of the worker Deployment, and Ready pods.",
        "short",
        query(f"sum by (jobqueue) ({m.DESIRED_REPLICAS}{{{SEL}}})", "{{jobqueue}} desired"),
        query(f"sum by (jobqueue) ({m.REPLICAS}{{{SEL}}})", "{{jobqueue}} replicas"),
        query(f"sum by (jobqueue) ({m.READY_REPLICAS}{{{SEL}}})", "{{jobqueue}} ready"),
    )


def worker_slots() -> timeseries.Panel:
    return _ts(
        "Worker slots and RQ workers",
        "Job slots of the running worker pods (concurrencyPerPod each) and how many are busy, "
        "reported by the workers; RQ workers by state, as the operator sees them in Redis.",
        "short",
        query(f"sum by (queue) ({m.WORKER_BUSY_SLOTS}{{{SEL}}})", "{{queue}} busy slots"),
        query(f"sum by (queue) ({m.WORKER_SLOTS}{{{SEL}}})", "{{queue}} slots"),
        query(f"sum by (queue, state) ({m.QUEUE_WORKERS}{{{SEL}}})", "{{queue}} RQ workers {{state}}"),
    )


def scaling_decisions() -> timeseries.Panel:
    return _bars(
        _ts(
            "Scaling decisions",
            "Replica changes made by the autoscaler, by direction and reason.",
            "short",
            query(
                f"sum by (queue, direction, reason) (increase({m.SCALING_DECISIONS}{{{SEL}}}[{RATE}]))",
                "{{queue}} {{direction}}: {{reason}}",
            ),
        )
    )


def lost_job_recoveries() -> timeseries.Panel:
    return _bars(
        _ts(
            "Lost-job recoveries",
            "Jobs that were running on a worker pod that vanished, re-queued (attempts left) or "
            "failed by the operator.",
            "short",
            query(
                f"sum by (queue, outcome) (increase({m.LOST_JOBS_RECOVERED}{{{SEL}}}[{RATE}]))",
                "{{queue}} {{outcome}}",
            ),
        )
    )


# --- operator ---------------------------------------------------------------------------


def redis_up() -> timeseries.Panel:
    return _ts(
        "Redis reachable",
        "1 when the operator's last poll of each Redis succeeded.",
        "short",
        query(f"max by (redis) ({m.REDIS_UP})", "{{redis}}"),
    )


def autoscaler_timing() -> timeseries.Panel:
    return _ts(
        "Autoscaler cycle",
        "p99 duration of one poll of all queues on a Redis (one round trip), and of one whole "
        "autoscaler pass over every queue (read, decide, scale).",
        "s",
        query(
            f"histogram_quantile(0.99, sum by (redis, le) (rate({m.POLL_DURATION_SECONDS}_bucket[{RATE}])))",
            "poll {{redis}} p99",
        ),
        query(
            f"histogram_quantile(0.99, sum by (le) (rate({m.AUTOSCALER_CYCLE_SECONDS}_bucket[{RATE}])))",
            "cycle p99",
        ),
    )


def autoscaler_errors() -> timeseries.Panel:
    return _ts(
        "Autoscaler errors",
        "Failed polls of each Redis, and Kubernetes API calls of the autoscaler that failed "
        "(scale, pod annotations, status, events), per second.",
        "ops",
        query(f"sum by (redis) (rate({m.POLL_ERRORS}[{RATE}]))", "poll {{redis}}"),
        query(f"sum by (action) (rate({m.AUTOSCALER_API_ERRORS}[{RATE}]))", "API {{action}}"),
    )


def reconciles() -> timeseries.Panel:
    return _ts(
        "Reconciles",
        "JobQueue and RecurringJob reconciliations per second, by result; published queue "
        "settings removed by the sweep because no JobQueue declares them any more.",
        "ops",
        query(f"sum by (kind, result) (rate({m.RECONCILE_TOTAL}[{RATE}]))", "{{kind}} {{result}}"),
        query(f"sum(rate({m.ORPHANED_SETTINGS_REMOVED}[{RATE}]))", "orphaned settings removed"),
    )


def reconcile_duration() -> timeseries.Panel:
    return _ts(
        "Reconcile duration",
        "p50 and p99 of one reconciliation (Deployment or CronJob applied, settings published).",
        "s",
        *[
            query(
                f"histogram_quantile({q}, sum by (kind, le) (rate({m.RECONCILE_SECONDS}_bucket[{RATE}])))",
                f"{{{{kind}}}} p{round(q * 100)}",
            )
            for q in (0.5, 0.99)
        ],
    )


def operator_version() -> timeseries.Panel:
    return _ts(
        "Operator version",
        "Running operator instances, by version, and how many of them act "
        "(hold the leader Lease: 1 when healthy; the others stand by). With autoscaler.shards: "
        "the replicas sharing the shards, and the shards each holds.",
        "short",
        query(f"sum by (version) ({m.OPERATOR_INFO})", "{{version}}"),
        query(f"sum({m.OPERATOR_LEADER})", "leading"),
        query(f"max({m.OPERATOR_SHARD_MEMBERS})", "shard members"),
        query(f"sum by (pod) ({m.OPERATOR_SHARDS_HELD})", "shards: {{pod}}"),
    )


# --- assembly ---------------------------------------------------------------------------


def variables() -> list[cogbuilder.Builder[models.VariableModel]]:
    def label_values(name: str, label: str, selector: str) -> dashboard.QueryVariable:
        return (
            dashboard.QueryVariable(name)
            .label(label)
            .datasource(DATASOURCE)
            .query(f"label_values({m.QUEUE_JOBS}{selector}, {name})")
            .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(models.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .current(models.VariableOption(selected=True, text="All", value="$__all"))
        )

    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        label_values("namespace", "Namespace", ""),
        label_values("queue", "Queue", '{namespace=~"$namespace"}'),
    ]


def rows() -> list[tuple[str, list[Panel]]]:
    return [
        ("Overview", [queued_now(), running_now(), oldest_now(), ready_workers_now()]),
        ("Backlog", [depth_by_state(), oldest_job_age()]),
        ("Throughput and errors", [throughput(), failures_and_retries(), exhausted_and_notified()]),
        ("Latency", [wait_time(), run_time()]),
        (
            "Workers and scaling",
            [workers_desired_vs_ready(), worker_slots(), scaling_decisions(), lost_job_recoveries()],
        ),
        (
            "Operator",
            [
                redis_up(),
                autoscaler_timing(),
                autoscaler_errors(),
                reconciles(),
                reconcile_duration(),
                operator_version(),
            ],
        ),
    ]


def build(description: str) -> models.Dashboard:
    """The whole dashboard; ``description`` carries the "generated, do not edit" marker."""
    c = config.CONFIG["dashboard"]
    board = (
        dashboard.Dashboard(c["title"])
        .uid(c["uid"])
        .description(description)
        .tags(c["tags"])
        .refresh(c["refresh"])
        .time(c["time_from"], "now")
        .timezone(common.TimeZoneBrowser)
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .variables(variables())
    )
    panel_id = 0
    for title, panels in rows():
        panel_id += 1
        board = board.with_row(dashboard.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            board = board.with_panel(panel.id(panel_id))
    return board.build()
