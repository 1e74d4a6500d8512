"""deploy/k8s: manifests that parse, probe the worker right, and hold no secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats_sessions import inbox_prefix

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))
WORKER_PORT = 9464
DRAIN_DEFAULT_SECONDS = 30.0
PLACEHOLDER = "change-me"


def documents(path: Path) -> list[dict[str, Any]]:
    """Every YAML document in a file."""
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def resources(kind: str) -> list[dict[str, Any]]:
    """Every Kubernetes object of ``kind`` across the manifests."""
    return [doc for path in MANIFESTS for doc in documents(path) if doc.get("kind") == kind]


@pytest.fixture(scope="module")
def worker() -> dict[str, Any]:
    """The worker Deployment."""
    [deployment] = [
        d for d in resources("Deployment") if d["metadata"]["name"] == "riskpipe-worker"
    ]
    return deployment


def container(workload: dict[str, Any]) -> dict[str, Any]:
    """The single container of a Deployment or Job."""
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def env(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's environment variables by name."""
    return {var["name"]: var for var in container(workload).get("env", [])}


def port_number(workload: dict[str, Any], port: int | str) -> int:
    """Resolve a probe port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container(workload)["ports"] if p["name"] == port]
    return int(number)


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_parses(path: Path) -> None:
    """Every YAML file under deploy/k8s loads with ``yaml.safe_load_all``."""
    assert documents(path)


@pytest.mark.parametrize(
    ("probe", "path"), [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]
)
def test_worker_probes_hit_its_http_port(worker: dict[str, Any], probe: str, path: str) -> None:
    """Readiness asks /readyz and liveness /healthz, both on the worker's port 9464."""
    get = container(worker)[probe]["httpGet"]
    assert get["path"] == path
    assert port_number(worker, get["port"]) == WORKER_PORT


def test_worker_grace_period_outlasts_its_drain(worker: dict[str, Any]) -> None:
    """The pod's termination grace period is longer than the worker's drain time."""
    drain = float(
        env(worker).get("RISKPIPE_DRAIN_TIMEOUT_SECONDS", {}).get("value", DRAIN_DEFAULT_SECONDS)
    )
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert drain >= DRAIN_DEFAULT_SECONDS
    assert grace > drain


def test_worker_serves_http_on_all_interfaces(worker: dict[str, Any]) -> None:
    """The worker binds 0.0.0.0:9464, or the kubelet's probes could not reach it."""
    variables = env(worker)
    assert variables["RISKPIPE_HTTP_HOST"]["value"] == "0.0.0.0"  # noqa: S104 - a pod's own address
    assert int(variables["RISKPIPE_HTTP_PORT"]["value"]) == WORKER_PORT


def test_worker_has_requests_and_limits(worker: dict[str, Any]) -> None:
    """CPU and memory requests and a memory limit are set."""
    limits = container(worker)["resources"]
    assert {"cpu", "memory"} <= set(limits["requests"])
    assert "memory" in limits["limits"]


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_workloads_run_as_the_image_non_root_user(kind: str) -> None:
    """Pods run as the Dockerfile's uid, non-root, without privilege escalation or capabilities."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    image_uid = int(re.findall(r"^USER (\d+)", dockerfile, re.MULTILINE)[-1])
    for workload in resources(kind):
        pod = workload["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == image_uid
        own = container(workload)["securityContext"]
        assert own["allowPrivilegeEscalation"] is False
        assert own["readOnlyRootFilesystem"] is True
        assert own["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_nats_credentials_come_from_secrets(kind: str) -> None:
    """The NATS URL is built from Secret-held credentials, never written in the manifest."""
    secrets = {
        s["metadata"]["name"]: set(s["stringData"]) for s in documents(K8S / "secret.example.yaml")
    }
    for workload in resources(kind):
        variables = env(workload)
        url = variables["RISKPIPE_NATS_URL"]["value"]
        assert "$(RISKPIPE_NATS_USER):$(RISKPIPE_NATS_PASSWORD)@" in url
        for name in ("RISKPIPE_NATS_USER", "RISKPIPE_NATS_PASSWORD"):
            ref = variables[name]["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]]


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_each_workload_sets_its_users_inbox_prefix(kind: str) -> None:
    """Replies arrive under the inbox subjects auth.conf lets the workload's user subscribe to."""
    users = {
        s["metadata"]["name"]: s["stringData"].get("username")
        for s in documents(K8S / "secret.example.yaml")
    }
    for workload in resources(kind):
        variables = env(workload)
        user = users[variables["RISKPIPE_NATS_USER"]["valueFrom"]["secretKeyRef"]["name"]]
        assert variables["RISKPIPE_INBOX_PREFIX"]["value"] == inbox_prefix(user)


def test_example_secrets_hold_only_placeholders() -> None:
    """Every password in the example Secrets is the placeholder, never a real value."""
    for secret in documents(K8S / "secret.example.yaml"):
        for key, value in secret["stringData"].items():
            if "PASSWORD" in key.upper():
                assert value == PLACEHOLDER, (secret["metadata"]["name"], key)


def test_helm_values_feed_every_password_auth_conf_reads() -> None:
    """The NATS chart values include auth.conf and set each variable it reads from a Secret."""
    [values] = documents(K8S / "nats-values.yaml")
    config = values["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert config["jetstream"]["enabled"] is True
    assert config["merge"] == {"00$include": "auth.conf"}
    wanted = set(re.findall(r"\$(NATS_\w+)", (DEPLOY / "nats" / "auth.conf").read_text()))
    provided = values["container"]["env"]
    assert set(provided) == wanted
    for variable in provided.values():
        assert variable["valueFrom"]["secretKeyRef"]["name"] == "riskpipe-nats-server"


def test_init_job_creates_r3_streams_as_admin() -> None:
    """The init Job runs ``riskpipe init`` with three replicas and the admin's Secret."""
    [job] = resources("Job")
    assert container(job)["args"] == ["init"]
    variables = env(job)
    assert variables["RISKPIPE_REPLICAS"]["value"] == "3"
    ref = variables["RISKPIPE_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "riskpipe-nats-admin"


def test_metrics_are_scraped_from_the_worker_port(worker: dict[str, Any]) -> None:
    """Pod annotations and the PodMonitor both point Prometheus at /metrics on port 9464."""
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == WORKER_PORT
    assert annotations["prometheus.io/path"] == "/metrics"
    [monitor] = resources("PodMonitor")
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert port_number(worker, endpoint["port"]) == WORKER_PORT
    assert endpoint["path"] == "/metrics"
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
