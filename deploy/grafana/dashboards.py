"""tuneflow's Grafana dashboards, as code (grafana-foundation-sdk): writes the JSON files beside this script.

    python deploy/grafana/dashboards.py           # (re)write stream-overview.json and app-detail.json
    python deploy/grafana/dashboards.py --check   # exit 1 if the committed JSON is not what the code builds

Every query reads metrics the apps export (ARCHITECTURE.md, "Observability") or `up` of the `tuneflow` job;
tests/integration/test_prometheus.py evaluates each one against the stack's Prometheus scraping a real stream.
Import the JSON into Grafana with a Prometheus data source; `$stream` and `$app` select what is shown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

HERE = Path(__file__).resolve().parent
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="${datasource}")
STREAM = 'stream=~"$stream"'
STREAM_APP = 'stream=~"$stream", app=~"$app"'


def _query(expr: str, legend: str) -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).datasource(PROMETHEUS)


def _timeseries(title: str, unit: str, *queries: Dataquery, description: str = "") -> Timeseries:
    panel = Timeseries().title(title).unit(unit).datasource(PROMETHEUS).height(8).span(12).description(description)
    for ref, query in zip("ABCDEFGH", queries, strict=False):
        panel = panel.with_target(query.ref_id(ref))
    return panel


def _variable(name: str, query: str, label: str) -> QueryVariable:
    return (QueryVariable(name).label(label).query(query).datasource(PROMETHEUS)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True).all_value(".*"))


def _base(uid: str, title: str, description: str) -> Dashboard:
    return (Dashboard(title).uid(uid).description(description).tags(["tuneflow"]).refresh("10s")
            .time("now-30m", "now").timezone("utc")
            .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus")))


def stream_overview() -> Dashboard:
    return (_base("tuneflow-overview", "tuneflow — streams", "Rates, failures, lag and instances of each app.")
            .with_variable(_variable("stream", "label_values(tuneflow_records_in_total, stream)", "Stream"))
            .with_row(Row("Throughput"))
            .with_panel(_timeseries("Records in / s", "reqps", _query(
                f"sum by (stream, app) (rate(tuneflow_records_in_total{{{STREAM}}}[$__rate_interval]))",
                "{{stream}}/{{app}}")))
            .with_panel(_timeseries("Records out / s", "reqps", _query(
                f"sum by (stream, app) (rate(tuneflow_records_out_total{{{STREAM}}}[$__rate_interval]))",
                "{{stream}}/{{app}}")))
            .with_row(Row("Failures"))
            .with_panel(_timeseries("Failed records / s by reason", "reqps", _query(
                f"sum by (stream, app, reason) (rate(tuneflow_records_failed_total{{{STREAM}}}[$__rate_interval]))",
                "{{stream}}/{{app}} {{reason}}"), description="Each failed record is in <stream>.<app>.dlq."))
            .with_panel(_timeseries("Dead letters / s", "reqps", _query(
                f"sum by (stream, app) (rate(tuneflow_dlq_records_total{{{STREAM}}}[$__rate_interval]))",
                "{{stream}}/{{app}}")))
            .with_row(Row("Health"))
            .with_panel(_timeseries("Consumer lag (records)", "short", _query(
                f"sum by (stream, app) (tuneflow_consumer_lag{{{STREAM}}})", "{{stream}}/{{app}}")))
            .with_panel(Stat().title("Instances up").datasource(PROMETHEUS).height(8).span(12).with_target(_query(
                f'sum by (stream, app) (up{{job="tuneflow", {STREAM}}})', "{{stream}}/{{app}}").ref_id("A"))))


def app_detail() -> Dashboard:
    def quantile(metric: str, q: float) -> Dataquery:
        return _query(f"histogram_quantile({q}, sum by (le, stream, app) "
                      f"(rate({metric}_bucket{{{STREAM_APP}}}[$__rate_interval])))", f"p{round(q * 100)} {{{{app}}}}")

    return (_base("tuneflow-app", "tuneflow — app detail", "One app's latency, lag per partition, retries and memory.")
            .with_variable(_variable("stream", "label_values(tuneflow_records_in_total, stream)", "Stream"))
            .with_variable(_variable("app", 'label_values(tuneflow_records_in_total{stream=~"$stream"}, app)', "App"))
            .with_panel(_timeseries("Batch latency", "s", quantile("tuneflow_batch_seconds", 0.5),
                                    quantile("tuneflow_batch_seconds", 0.99)))
            .with_panel(_timeseries("Sink write latency", "s", quantile("tuneflow_sink_write_seconds", 0.5),
                                    quantile("tuneflow_sink_write_seconds", 0.99),
                                    description="Sinks only: one bulk write per batch."))
            .with_panel(_timeseries("Lag per partition", "short", _query(
                f"tuneflow_consumer_lag{{{STREAM_APP}}}", "{{app}}-{{instance}} {{topic}}[{{partition}}]")))
            .with_panel(_timeseries("Retries / s", "reqps", _query(
                f"sum by (app, operation) (rate(tuneflow_retries_total{{{STREAM_APP}}}[$__rate_interval]))",
                "{{app}} {{operation}}"), description="Retries while a service is down: the app pauses."))
            .with_panel(_timeseries("Memory", "bytes", _query(
                f"tuneflow_memory_rss_bytes{{{STREAM_APP}}}", "{{app}}-{{instance}} RSS"), _query(
                f"tuneflow_memory_limit_bytes{{{STREAM_APP}}}", "{{app}}-{{instance}} limit"),
                description="Past the limit (deployer.<app>.memory) an instance drains and exits."))
            .with_panel(_timeseries("Ready instances", "short", _query(
                f"sum by (app) (tuneflow_app_ready{{{STREAM_APP}}})", "{{app}}"))))


DASHBOARDS = {"stream-overview.json": stream_overview, "app-detail.json": app_detail}


def render(build: Dashboard) -> str:
    return json.dumps(json.loads(JSONEncoder(sort_keys=True, indent=2).encode(build.build())), indent=2,
                      sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, build in DASHBOARDS.items():
        path, text = HERE / name, render(build())
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)}: run `python deploy/grafana/dashboards.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
