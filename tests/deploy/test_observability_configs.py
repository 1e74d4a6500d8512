"""Prometheus, Grafana, OpenTelemetry and compose configs in deploy/: valid and true to the code."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import promql_parser
import pytest
import yaml
from nats_sessions import inbox_prefix
from prometheus_client import CollectorRegistry
from support.tools import require_tool

from eventstore._jetstream._auth import is_example_secret
from projections.readmodel import ReadModelMetrics
from riskpipe.settings import Settings
from riskpipe.worker import Worker

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventstore import EventStore
    from riskpipe.server import NatsServer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "riskpipe.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
COLLECTOR = DEPLOY / "otel" / "collector.yaml"
COMPOSE = DEPLOY / "docker-compose.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

_METRIC = re.compile(r"\briskpipe_[a-z0-9_]+")
# The sample names prometheus-client exposes for each family type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}
# Grafana's variables, replaced by values PromQL accepts.
_GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$projection": ".*",
}
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
_HISTOGRAM_SAMPLES = ("_bucket", "_sum", "_count")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool (a missing promtool skips the test, see support.tools)."""
    return subprocess.run(
        [require_tool("promtool"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load_yaml(path: Path) -> Any:
    """A YAML file's content (compose's merge keys included)."""
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of every group in alerts.yml."""
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def dashboard_panels() -> Iterator[dict[str, Any]]:
    """Every panel of the dashboard, those nested in rows included."""
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        yield panel
        yield from panel.get("panels", ())


def dashboard_exprs() -> list[str]:
    """The PromQL of every panel target."""
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", ())]


def exposed_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry exposes, labelled families without children included."""
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture
async def metric_names(nats_server: NatsServer, store: EventStore) -> set[str]:
    """The riskpipe metric names a real worker with enrichment registers, and the read model's."""
    settings = Settings(nats_url=nats_server.url, enrichment_url="http://127.0.0.1:9/score")
    registry = CollectorRegistry()
    ReadModelMetrics(registry)
    worker = Worker(store, settings, registry)
    assert worker.enricher is not None
    await worker.enricher.aclose()
    return {name for name in exposed_names(registry) if name.startswith("riskpipe_")}


def unknown_metrics(text: str, known: set[str]) -> set[str]:
    """The riskpipe_* names in ``text`` that are not in ``known``."""
    return set(_METRIC.findall(text)) - known


# -- Prometheus ------------------------------------------------------------------------


def test_promtool_accepts_the_alert_rules() -> None:
    """``promtool check rules`` passes on alerts.yml."""
    result = promtool("check", "rules", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_prometheus_config() -> None:
    """``promtool check config`` passes on prometheus.yml and the rule files it loads."""
    result = promtool("check", "config", PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


def test_every_alert_has_its_annotations_and_a_runbook_section() -> None:
    """Each rule has a summary, a description and a runbook naming a section of operations.md."""
    anchors = markdown_anchors(OPERATIONS.read_text())
    rules = alert_rules()
    assert len(rules) >= 6
    for rule in rules:
        notes = rule["annotations"]
        assert notes["summary"], rule["alert"]
        assert notes["description"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "docs/operations.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/operations.md has no section for {rule['alert']}"


def test_the_required_alerts_exist() -> None:
    """Lag, DLQ, breaker, no progress, redeliveries and worker-down alerts are all defined."""
    names = {rule["alert"] for rule in alert_rules()}
    assert names >= {
        "RiskpipeLagGrowing",
        "RiskpipeDLQNotEmpty",
        "RiskpipeDLQGrowing",
        "RiskpipeBreakerOpen",
        "RiskpipeNoProgress",
        "RiskpipeRedeliveryRateHigh",
        "RiskpipeWorkerDown",
    }


def test_alert_rules_reference_only_metrics_a_worker_exposes(metric_names: set[str]) -> None:
    """Every riskpipe_* name in an alert expression is a sample name a real worker exposes."""
    for rule in alert_rules():
        assert not unknown_metrics(rule["expr"], metric_names), rule["alert"]
        assert _METRIC.search(rule["expr"]) or "up{" in rule["expr"], rule["alert"]


def test_alerts_fire_when_they_should_and_only_then(tmp_path: Path) -> None:
    """``promtool test rules``: each alert fires on synthetic series where it should, only there."""
    rules = load_yaml(ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            del rule["annotations"]  # their wording is not under test, the expressions are
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests.yml").write_text(RULE_TESTS)
    result = promtool("test", "rules", tmp_path / "tests.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# -- Grafana ---------------------------------------------------------------------------


def test_the_dashboard_parses_and_shows_what_operators_need() -> None:
    """The dashboard is JSON with a PromQL target per panel, covering every required view."""
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "riskpipe"
    for panel in dashboard_panels():
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    exprs = "\n".join(dashboard_exprs())
    for needed in (
        "riskpipe_projection_messages_total",
        "riskpipe_projection_consumer_pending_messages",
        "riskpipe_projection_processing_seconds_bucket",
        "riskpipe_projection_end_to_end_seconds_bucket",
        "riskpipe_dlq_depth_messages",
        "riskpipe_dlq_oldest_age_seconds",
        "riskpipe_enrichment_breaker_state",
        "riskpipe_risk_assessments_total",
        "riskpipe_store_appends_total",
    ):
        assert needed in exprs, needed
    assert "histogram_quantile(0.5," in exprs
    assert "histogram_quantile(0.99," in exprs


def test_the_dashboard_references_only_metrics_a_worker_exposes(metric_names: set[str]) -> None:
    """Every riskpipe_* name in a dashboard query is a sample name a real worker exposes."""
    board = json.loads(DASHBOARD.read_text())
    variable_queries = [v["definition"] for v in board["templating"]["list"]]
    for expr in [*dashboard_exprs(), *variable_queries]:
        assert not unknown_metrics(expr, metric_names), expr


def promql_problem(expr: str) -> str | None:
    """Why ``expr`` is not valid PromQL (syntax, unknown function, argument types), or None."""
    try:
        promql_parser.parse(expr)
    except ValueError as exc:
        return str(exc)
    return None


def grafana_filled(expr: str) -> str:
    """``expr`` with Grafana's variables replaced by values PromQL accepts."""
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(riskpipe_store_appends_total[5m]", "unclosed left parenthesis"),
        ("rate(riskpipe_store_appends_total)", "expected type matrix"),
        ("nosuch(riskpipe_store_appends_total)", "unknown function"),
        ("rate(riskpipe_store_appends_total[$__rate_interval])", "unexpected character"),
    ],
)
def test_the_promql_check_catches_broken_queries(expr: str, problem: str) -> None:
    """The dashboard check refuses bad syntax, types, functions and unfilled variables."""
    found = promql_problem(expr)
    assert found is not None
    assert problem in found


def test_every_dashboard_query_is_valid_promql() -> None:
    """With Grafana's variables filled in, every dashboard expression parses as PromQL."""
    exprs = dashboard_exprs()
    assert exprs
    for expr in exprs:
        assert promql_problem(grafana_filled(expr)) is None, expr


def test_every_alert_expression_is_valid_promql() -> None:
    """Every alert expression parses as PromQL, where promtool is missing too."""
    for rule in alert_rules():
        assert promql_problem(rule["expr"]) is None, rule["alert"]


def test_the_dashboard_uses_the_provisioned_datasource() -> None:
    """Every datasource the dashboard names is the Prometheus that Grafana is provisioned with."""
    provisioned = {d["uid"] for d in load_yaml(DATASOURCES)["datasources"]}
    uids = set(re.findall(r'"uid":\s*"([^"]+)"', DASHBOARD.read_text())) - {"riskpipe"}
    assert uids
    assert uids <= provisioned


# -- docs ------------------------------------------------------------------------------


def test_operations_doc_lists_every_metric_and_only_real_ones(metric_names: set[str]) -> None:
    """docs/operations.md names every riskpipe metric, and no metric that does not exist."""
    histograms = {n.removesuffix("_bucket") for n in metric_names if n.endswith("_bucket")}
    primary = {
        name for name in metric_names if not name.endswith(("_created", *_HISTOGRAM_SAMPLES))
    } | histograms
    documented = set(_METRIC.findall(OPERATIONS.read_text()))
    assert not primary - documented, "undocumented"
    assert not documented - metric_names - histograms, "not exposed"


# -- compose ---------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    """The compose file with its variables interpolated by fake values, as compose would."""
    text = _INTERPOLATION.sub(
        lambda m: m[3] if m[2] == "-" else f"fake-{m[1].lower()}", COMPOSE.read_text()
    )
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of the service's bind mounts."""
    mounts = []
    for volume in service.get("volumes", ()):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append(((COMPOSE.parent / source).resolve(), target))
    return mounts


def container_paths(service: dict[str, Any]) -> Iterator[str]:
    """Absolute paths the service's command and environment hand to the process."""
    command = service.get("command", [])
    values = [*command, *(str(v) for v in service.get("environment", {}).values())]
    for value in values:
        for token in re.split(r"[=,\s]", value):
            if token.startswith("/"):
                yield token


def test_compose_references_only_files_that_exist() -> None:
    """Build files, bind-mount sources, and config paths given to containers all exist."""
    services = compose()["services"]
    for name, service in services.items():
        if "build" in service:
            context = (COMPOSE.parent / service["build"]["context"]).resolve()
            assert context == ROOT, name
            assert (context / service["build"]["dockerfile"]).is_file(), name
        mounts = bind_mounts(service)
        for source, _ in mounts:
            assert source.exists(), f"{name}: {source}"
        for path in container_paths(service):
            for source, target in mounts:
                if path == target:
                    assert source.is_file(), (name, path)
                elif path.startswith(target + "/"):
                    assert (source / path.removeprefix(target + "/")).is_file(), (name, path)


def test_compose_depends_only_on_defined_services() -> None:
    """Every depends_on entry names a service of the same file."""
    services = compose()["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", ())) <= set(services), name


def test_every_scrape_target_is_a_compose_service_on_its_port() -> None:
    """Each Prometheus target is a compose service, on the port that service listens on."""
    services = compose()["services"]
    ports = {"riskpipe": None, "nats": 7777, "prometheus": 9090}
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    assert set(jobs) == set(ports)
    for job_name, job in jobs.items():
        targets = [t for static in job["static_configs"] for t in static["targets"]]
        assert targets, job_name
        for target in targets:
            host, _, port = target.partition(":")
            assert host in services, target
            env = services[host].get("environment", {})
            expected = ports[job_name] or int(env.get("RISKPIPE_HTTP_PORT", 9464))
            assert int(port) == expected, target
    workers = {n for n, s in services.items() if s.get("command") == ["worker"]}
    riskpipe_targets = {
        t.partition(":")[0] for t in jobs["riskpipe"]["static_configs"][0]["targets"]
    }
    assert riskpipe_targets == workers
    exporters = {n for n in services if n.startswith("nats-exporter-")}
    assert {t.partition(":")[0] for t in jobs["nats"]["static_configs"][0]["targets"]} == exporters


def test_compose_runs_three_nats_nodes_r3_workers_and_their_settings() -> None:
    """Three NATS nodes from the cluster configs; init and workers with R3 and valid settings."""
    services = compose()["services"]
    nodes = {n for n in services if re.fullmatch(r"nats-\d", n)}
    assert nodes == {"nats-1", "nats-2", "nats-3"}
    for node in nodes:
        assert services[node]["command"][-1].endswith(f"cluster/n{node[-1]}.conf")
    riskpipe = {n: s for n, s in services.items() if s.get("command") in (["init"], ["worker"])}
    assert {n for n, s in riskpipe.items() if s["command"] == ["worker"]} >= {
        "worker-1",
        "worker-2",
    }
    for name, service in riskpipe.items():
        env = service["environment"]
        fields = {key.removeprefix("RISKPIPE_").lower(): value for key, value in env.items()}
        assert set(fields) <= set(Settings.model_fields), name
        settings = Settings.model_validate(fields)
        assert settings.replicas == 3, name
        hosts = {url.split("@")[1].split(":")[0] for url in settings.nats_url.split(",")}
        assert hosts == nodes, name
        # replies under the inbox subjects auth.conf lets this user subscribe to
        user = settings.nats_url.split("://")[1].split(":")[0]
        assert settings.inbox_prefix == inbox_prefix(user), name
        if service["command"] == ["worker"]:
            assert settings.http_host == "0.0.0.0", name  # noqa: S104 - scraped from other containers
            assert settings.traces_exporter == "otlp", name
            assert settings.otlp_endpoint is not None
            assert settings.otlp_endpoint.split("/")[2].split(":")[0] in services
            grace = float(service["stop_grace_period"].removesuffix("s"))
            assert grace > settings.drain_timeout_seconds, name


def test_the_collector_forwards_traces_to_jaeger() -> None:
    """The collector pipeline uses only components it defines, and exports to the jaeger service."""
    config = load_yaml(COLLECTOR)
    pipeline = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert set(pipeline[kind]) <= set(config[kind]), kind
    endpoints = [config["exporters"][name]["endpoint"] for name in pipeline["exporters"]]
    services = compose()["services"]
    assert [e.split(":")[0] for e in endpoints] == ["jaeger"]
    assert "jaeger" in services
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    worker_endpoint = services["worker-1"]["environment"]["RISKPIPE_OTLP_ENDPOINT"]
    assert worker_endpoint.split("/")[2].split(":")[1] == http.rsplit(":", 1)[1]


def markdown_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown document."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# Synthetic series for ``promtool test rules``: each alert fires where it should
# and stays silent for the look-alike case next to it. Instances are w1, w2 ...
RULE_TESTS = """
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  # A worker down for 2 minutes; no worker at all.
  - interval: 1m
    input_series:
      - series: 'up{job="riskpipe", instance="w1"}'
        values: '1 1 0x10'
      - series: 'up{job="riskpipe", instance="w2"}'
        values: '1x12'
    alert_rule_test:
      - eval_time: 3m
        alertname: RiskpipeWorkerDown
      - eval_time: 5m
        alertname: RiskpipeWorkerDown
        exp_alerts:
          - exp_labels: {severity: warning, job: riskpipe, instance: w1}
      - eval_time: 5m
        alertname: RiskpipeNoWorkerUp
  - interval: 1m
    input_series:
      - series: 'up{job="riskpipe", instance="w1"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: RiskpipeNoWorkerUp
        exp_alerts:
          - exp_labels: {severity: critical}

  # A growing backlog fires; a large but steady one does not.
  - interval: 1m
    input_series:
      - series: 'riskpipe_projection_consumer_pending_messages{projection="risk", instance="w1"}'
        values: '1000+100x60'
      - series: 'riskpipe_projection_consumer_pending_messages{projection="risk", instance="w2"}'
        values: '1000+100x60'
      - series: 'riskpipe_projection_consumer_pending_messages{projection="steady", instance="w1"}'
        values: '5000x60'
    alert_rule_test:
      - eval_time: 10m
        alertname: RiskpipeLagGrowing
      - eval_time: 20m
        alertname: RiskpipeLagGrowing
        exp_alerts:
          - exp_labels: {severity: warning, projection: risk}

  # Stuck with pending work, and stuck before finishing anything, fire; paused,
  # busy and idle projections do not.
  - interval: 1m
    input_series:
      - series: 'riskpipe_projection_consumer_pending_messages{projection="stuck", instance="w1"}'
        values: '50x30'
      - series: 'riskpipe_projection_consumer_ack_pending_messages{projection="stuck"}'
        values: '0x30'
      - series: 'riskpipe_projection_messages_total{projection="stuck", outcome="assessed"}'
        values: '100x30'
      - series: 'riskpipe_projection_messages_total{projection="stuck", outcome="retried"}'
        values: '0+5x30'
      - series: 'riskpipe_projection_paused{projection="stuck", instance="w1"}'
        values: '0x30'
      - series: 'riskpipe_projection_consumer_pending_messages{projection="fresh", instance="w1"}'
        values: '0x30'
      - series: 'riskpipe_projection_consumer_ack_pending_messages{projection="fresh"}'
        values: '7x30'
      - series: 'riskpipe_projection_consumer_pending_messages{projection="paused", instance="w1"}'
        values: '50x30'
      - series: 'riskpipe_projection_consumer_ack_pending_messages{projection="paused"}'
        values: '1x30'
      - series: 'riskpipe_projection_paused{projection="paused", instance="w1"}'
        values: '1x30'
      - series: 'riskpipe_projection_consumer_pending_messages{projection="busy", instance="w1"}'
        values: '50x30'
      - series: 'riskpipe_projection_consumer_ack_pending_messages{projection="busy"}'
        values: '10x30'
      - series: 'riskpipe_projection_messages_total{projection="busy", outcome="assessed"}'
        values: '0+60x30'
      - series: 'riskpipe_projection_consumer_pending_messages{projection="idle", instance="w1"}'
        values: '0x30'
      - series: 'riskpipe_projection_consumer_ack_pending_messages{projection="idle"}'
        values: '0x30'
      - series: 'riskpipe_projection_messages_total{projection="idle", outcome="assessed"}'
        values: '100x30'
    alert_rule_test:
      - eval_time: 3m
        alertname: RiskpipeNoProgress
      - eval_time: 20m
        alertname: RiskpipeNoProgress
        exp_alerts:
          - exp_labels: {severity: critical, projection: stuck}
          - exp_labels: {severity: critical, projection: fresh}

  # Half of the deliveries redelivered fires; one in 600 does not.
  - interval: 1m
    input_series:
      - series: 'riskpipe_projection_redeliveries_total{projection="risk", instance="w1"}'
        values: '0+60x40'
      - series: 'riskpipe_projection_messages_total{projection="risk", outcome="assessed"}'
        values: '0+120x40'
      - series: 'riskpipe_projection_messages_total{projection="risk", outcome="paused"}'
        values: '0+6000x40'
      - series: 'riskpipe_projection_redeliveries_total{projection="calm", instance="w1"}'
        values: '0+1x40'
      - series: 'riskpipe_projection_messages_total{projection="calm", outcome="assessed"}'
        values: '0+600x40'
    alert_rule_test:
      - eval_time: 10m
        alertname: RiskpipeRedeliveryRateHigh
      - eval_time: 30m
        alertname: RiskpipeRedeliveryRateHigh
        exp_alerts:
          - exp_labels: {severity: warning, projection: risk}

  # A DLQ with letters fires NotEmpty after 5 minutes; only one that keeps
  # growing fires Growing, a single batch of dead letters does not.
  - interval: 1m
    input_series:
      - series: 'riskpipe_dlq_depth_messages{projection="risk", instance="w1"}'
        values: '0 0 3x30'
      - series: 'riskpipe_dlq_depth_messages{projection="risk", instance="w2"}'
        values: '0 0 0 3x30'
      - series: 'riskpipe_dlq_depth_messages{projection="growing", instance="w1"}'
        values: '1+1x40'
      - series: 'riskpipe_dlq_depth_messages{projection="empty", instance="w1"}'
        values: '0x40'
    alert_rule_test:
      - eval_time: 6m
        alertname: RiskpipeDLQNotEmpty
        exp_alerts:
          - exp_labels: {severity: warning, projection: growing}
      - eval_time: 10m
        alertname: RiskpipeDLQNotEmpty
        exp_alerts:
          - exp_labels: {severity: warning, projection: risk}
          - exp_labels: {severity: warning, projection: growing}
      - eval_time: 30m
        alertname: RiskpipeDLQGrowing
        exp_alerts:
          - exp_labels: {severity: critical, projection: growing}

  # A breaker open or probing (half-open) for 5 minutes fires; one that closes
  # between failures does not.
  - interval: 1m
    input_series:
      - series: 'riskpipe_enrichment_breaker_state{instance="w1"}'
        values: '0 0 0 2 2 1 2 1 2 2 1 2 2 1 2 2 1 2'
      - series: 'riskpipe_enrichment_breaker_state{instance="w2"}'
        values: '0 0 0 2 2 0 2 2 0 2 2 0 2 2 0 2 2 0'
      - series: 'riskpipe_enrichment_breaker_state{instance="w3"}'
        values: '0x17'
    alert_rule_test:
      - eval_time: 5m
        alertname: RiskpipeBreakerOpen
      - eval_time: 15m
        alertname: RiskpipeBreakerOpen
        exp_alerts:
          - exp_labels: {severity: critical, instance: w1}

  # Two analyzer configs side by side for 30 minutes.
  - interval: 1m
    input_series:
      - series: 'riskpipe_analyzer_info{instance="w1", version="1.2.0", config_fingerprint="aa"}'
        values: '1x60'
      - series: 'riskpipe_analyzer_info{instance="w2", version="1.3.0", config_fingerprint="bb"}'
        values: '_x5 1x55'
      - series: 'riskpipe_analyzer_info{instance="w3", version="1.2.0", config_fingerprint="aa"}'
        values: '1x60'
    alert_rule_test:
      - eval_time: 20m
        alertname: RiskpipeAnalyzerVersionsMixed
      - eval_time: 40m
        alertname: RiskpipeAnalyzerVersionsMixed
        exp_alerts:
          - exp_labels: {severity: warning}

  # An unhealthy server, a server its exporter cannot reach, and an exporter
  # that is down fire; a healthy server does not.
  - interval: 1m
    input_series:
      - series: 'up{job="nats", instance="x1:7777"}'
        values: '1x10'
      - series: 'nats_varz_connections{job="nats", instance="x1:7777", server_id="n1"}'
        values: '4x10'
      - series: 'nats_healthz_status{job="nats", instance="x1:7777", server_id="n1"}'
        values: '0x10'
      - series: 'up{job="nats", instance="x2:7777"}'
        values: '1x10'
      - series: 'nats_varz_connections{job="nats", instance="x2:7777", server_id="n2"}'
        values: '4x10'
      - series: 'nats_healthz_status{job="nats", instance="x2:7777", server_id="n2"}'
        values: '1x10'
      - series: 'up{job="nats", instance="x3:7777"}'
        values: '1x10'
      - series: 'up{job="nats", instance="x4:7777"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 5m
        alertname: RiskpipeNatsServerUnhealthy
        exp_alerts:
          - exp_labels: {severity: warning, job: nats, instance: "x2:7777", server_id: n2}
          - exp_labels: {severity: warning, job: nats, instance: "x3:7777"}
          - exp_labels: {severity: warning, job: nats, instance: "x4:7777"}
"""


def test_grafana_shows_nothing_without_a_login() -> None:
    """Grafana's anonymous access stays off: dashboards name tenants and entities."""
    env = compose()["services"]["grafana"]["environment"]
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED", "false") == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("fake-")  # from deploy/.env, never written


def test_the_example_secrets_are_refused_as_they_are() -> None:
    """Every password placeholder in the k8s example is one that riskpipe refuses to use."""
    documents = list(yaml.safe_load_all((DEPLOY / "k8s" / "secret.example.yaml").read_text()))
    values = [
        value
        for document in documents
        for key, value in document["stringData"].items()
        if "PASSWORD" in key.upper()
    ]
    assert values
    assert all(is_example_secret(value) for value in values)
