"""The deployment manifests, checked without a container engine: structure, references, Prefect's schemas."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker" / "compose.yaml"
KUBERNETES = INFRA / "kubernetes"
PLACEHOLDER = re.compile(r"\{\{\s*([\w.$]+)\s*\}\}")
API_VERSIONS = {
    "Namespace": "v1", "Service": "v1", "Secret": "v1", "ServiceAccount": "v1", "PersistentVolumeClaim": "v1",
    "ConfigMap": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1",
    "Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
}


def _pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and bool(tag) and tag != "latest" and "/" not in tag


def _prefect_kubernetes_template() -> dict[str, Any]:
    """The default base job template of Prefect's kubernetes worker, as shipped inside prefect (offline)."""
    import prefect

    path = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    return json.loads(path.read_text())["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]


# ------------------------------------------------------------------ docker compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_the_services_with_pinned_images(compose):
    services = compose["services"]
    assert {"postgres", "prefect-server", "prefect-worker", "seaweedfs", "dask-scheduler", "dask-worker"} <= set(services)
    for name, service in services.items():
        assert _pinned(service["image"]), f"{name}: image {service['image']} is not pinned"
    assert services["prefect-server"]["image"].startswith("prefecthq/prefect:3.9.1")
    assert services["prefect-worker"]["build"]["dockerfile"] == "infra/docker/Dockerfile"
    assert (COMPOSE.parent / services["prefect-worker"]["build"]["context"] / "infra/docker/Dockerfile").is_file()


def test_compose_publishes_on_loopback_only_and_wires_services(compose):
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for dep in service.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (source.startswith("./") and (COMPOSE.parent / source.replace("s3.json", "s3.example.json")).exists()) \
                or source in compose["volumes"], f"{name}: volume {volume}"
    server = services["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:")
    assert "@postgres:5432/prefect" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    worker = services["prefect-worker"]
    assert worker["command"][:3] == ["prefect", "worker", "start"] and "rasteret-local" in worker["command"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert worker["environment"]["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert "staging:/staging" in worker["volumes"] and "staging:/staging" in services["dask-worker"]["volumes"]
    assert "tcp://dask-scheduler:8786" in services["dask-worker"]["command"]


def test_compose_takes_secrets_from_the_environment_only(compose):
    text = COMPOSE.read_text()
    for secret in ("POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        for value in re.findall(rf"{secret}: (.+)", text):
            assert value.startswith("${" + secret), f"{secret} has a literal value"
    assert "${POSTGRES_PASSWORD" in compose["services"]["prefect-server"]["environment"][
        "PREFECT_API_DATABASE_CONNECTION_URL"]


# ------------------------------------------------------------------ kubernetes


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [dict(doc, _file=path.name) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _workloads(manifests):
    return [d for d in manifests if d["kind"] in ("Deployment", "StatefulSet")]


def test_every_manifest_is_a_known_kind_in_the_namespace(manifests):
    for doc in manifests:
        assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], doc["_file"]
        assert doc["metadata"]["name"]
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "rasteret", f"{doc['_file']} {doc['metadata']['name']}"
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests}
    for wanted in [("Deployment", "prefect-server"), ("StatefulSet", "postgres"), ("Deployment", "prefect-worker"),
                   ("StatefulSet", "seaweedfs"), ("Deployment", "dask-scheduler"), ("Deployment", "dask-worker")]:
        assert wanted in kinds


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml", "secrets.example.yaml"}
    assert listed == on_disk
    assert kustomization["configMapGenerator"][0]["files"] == ["base-job-template.json"]


def test_workloads_select_their_pods_and_pin_images(manifests):
    for doc in _workloads(manifests):
        spec = doc["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), doc["metadata"]["name"]
        for container in spec["template"]["spec"]["containers"]:
            assert _pinned(container["image"]), container["image"]
            assert container["resources"]["requests"], container["name"]


def test_services_route_to_named_container_ports(manifests):
    workloads = _workloads(manifests)
    for service in (d for d in manifests if d["kind"] == "Service"):
        targets = [w for w in workloads
                   if service["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert targets, f"service {service['metadata']['name']} selects no workload"
        names = {p["name"] for w in targets for c in w["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in names, f"{service['metadata']['name']}: {port['targetPort']}"


def test_secret_references_resolve_and_no_secret_is_inline(manifests):
    secrets = {d["metadata"]["name"]: set(d["stringData"]) for d in manifests if d["kind"] == "Secret"}
    assert set(secrets) == {"rasteret-postgres", "rasteret-s3"}
    template = json.loads((KUBERNETES / "base-job-template.json").read_text())
    refs = []
    for doc in [*_workloads(manifests), template["job_configuration"]["job_manifest"]]:
        pod = doc["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for env in container.get("env", []) if isinstance(container.get("env"), list) else []:
                if "valueFrom" in env:
                    ref = env["valueFrom"]["secretKeyRef"]
                    refs.append((ref["name"], ref["key"]))
                else:
                    assert not re.search(r"SECRET|PASSWORD|TOKEN", env["name"]), f"{env['name']} is inline"
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                refs += [(volume["secret"]["secretName"], item["key"]) for item in volume["secret"]["items"]]
    assert refs
    for name, key in refs:
        assert key in secrets[name], f"{name}/{key}"


def test_the_worker_runs_the_kubernetes_pool_with_the_template_mounted(manifests):
    (worker,) = [d for d in manifests if d["kind"] == "Deployment" and d["metadata"]["name"] == "prefect-worker"]
    pod = worker["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert command[command.index("--pool") + 1] == "rasteret-kubernetes"
    assert command[command.index("--type") + 1] == "kubernetes"
    mount = pod["containers"][0]["volumeMounts"][0]["mountPath"]
    assert command[command.index("--base-job-template") + 1] == f"{mount}/base-job-template.json"
    assert pod["volumes"][0]["configMap"]["name"] == "rasteret-base-job-template"
    rules = next(d for d in manifests if d["kind"] == "Role")["rules"]
    assert any("jobs" in r["resources"] and "create" in r["verbs"] for r in rules)
    accounts = {d["metadata"]["name"] for d in manifests if d["kind"] == "ServiceAccount"}
    assert pod["serviceAccountName"] in accounts


# ------------------------------------------------------------------ base job template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return json.loads((KUBERNETES / "base-job-template.json").read_text())


def test_base_job_template_matches_prefects_kubernetes_worker_schema(template):
    prefect_default = _prefect_kubernetes_template()
    assert set(template) == {"job_configuration", "variables"}
    assert set(prefect_default["job_configuration"]) <= set(template["job_configuration"])
    ours, theirs = template["variables"]["properties"], prefect_default["variables"]["properties"]
    assert set(theirs) <= set(ours)
    for name, schema in theirs.items():
        assert ours[name].get("type") == schema.get("type"), name
    jsonschema.Draft7Validator.check_schema(template["variables"])
    defaults = {k: v["default"] for k, v in ours.items() if "default" in v}
    jsonschema.validate(defaults, template["variables"])
    assert defaults["image"] == "rasteret/rasteret:0.1.0" and defaults["namespace"] == "rasteret"
    assert not any(re.search(r"SECRET|PASSWORD|TOKEN", k) for k in defaults["env"])


def test_every_placeholder_is_a_variable_and_the_rendered_job_is_valid(template):
    from prefect.utilities.templating import apply_values

    text = json.dumps(template["job_configuration"])
    variables = template["variables"]["properties"]
    for name in PLACEHOLDER.findall(text):
        assert name in variables, f"{{{{ {name} }}}} is not a variable"
    values = {k: v["default"] for k, v in variables.items() if "default" in v}
    values.update(name="rasteret-run", command="prefect flow-run execute", labels={"app": "rasteret"})
    rendered = apply_values(template["job_configuration"], values)
    job = rendered["job_manifest"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert job["metadata"]["namespace"] == "rasteret"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["serviceAccountName"] == "rasteret-flow-run"
    container = pod["containers"][0]
    assert container["image"] == "rasteret/rasteret:0.1.0"
    assert {m["name"] for m in container["volumeMounts"]} == {v["name"] for v in pod["volumes"]}
    assert not PLACEHOLDER.search(json.dumps(job))


# ------------------------------------------------------------------ prefect.yaml


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def test_prefect_yaml_deployments_point_at_flows_with_their_parameters(project):
    """Each entrypoint loads as a worker loads it (Prefect's loader, from the project folder) to a flow."""
    entrypoints = sorted({d["entrypoint"] for d in project["deployments"]})
    for entrypoint in entrypoints:
        assert (ROOT / entrypoint.partition(":")[0]).is_file(), entrypoint
    script = (
        "import inspect, json, sys\n"
        "from prefect import Flow\n"
        "from prefect.flows import load_flow_from_entrypoint\n"
        "out = {}\n"
        "for entrypoint in sys.argv[1:]:\n"
        "    flow = load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False)\n"
        "    assert isinstance(flow, Flow), entrypoint\n"
        "    out[entrypoint] = sorted(inspect.signature(flow.fn).parameters)\n"
        "print(json.dumps(out))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # what the installed package gives, no more
    done = subprocess.run([sys.executable, "-c", script, *entrypoints], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    accepted = json.loads(done.stdout.strip().splitlines()[-1])
    for deployment in project["deployments"]:
        assert set(deployment.get("parameters", {})) <= set(accepted[deployment["entrypoint"]]), deployment["name"]
        assert deployment["work_pool"]["name"] in {"rasteret-local", "rasteret-kubernetes"}


def test_prefect_yaml_schedules_and_pools(project):
    from prefect.client.schemas.schedules import CronSchedule

    from infra.local.deploy import LOCAL_DEPLOYMENTS, LOCAL_POOL

    local = [d["name"] for d in project["deployments"] if d["work_pool"]["name"] == LOCAL_POOL]
    assert tuple(local) == LOCAL_DEPLOYMENTS
    scheduled = {d["name"]: d["schedules"] for d in project["deployments"] if d.get("schedules")}
    assert {"scheduled-ingestion", "scheduled-enrichment", "k8s-scheduled-ingestion"} <= set(scheduled)
    for schedules in scheduled.values():
        for schedule in schedules:
            CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    on_demand = {d["name"] for d in project["deployments"] if not d.get("schedules")}
    assert {"on-demand-extraction", "on-demand-sampling", "on-demand-enrichment"} <= on_demand
    pools = project["definitions"]["work_pools"]
    assert pools["kubernetes"]["job_variables"]["image"] == "rasteret/rasteret:0.1.0"


def test_readme_documents_each_manifest():
    readme = (INFRA / "README.md").read_text()
    for path in [*glob.glob(str(KUBERNETES / "*")), str(COMPOSE), str(INFRA / "docker" / "Dockerfile")]:
        assert Path(path).name in readme, Path(path).name
