"""Kubernetes manifests and the per-model service generator (infra/k8s).

Core objects are validated against the Kubernetes API schemas (kubernetes-validate, strict: no
unknown fields); HTTPScaledObjects against the project's own JSON schema of the KEDA HTTP add-on's
spec (infra/k8s/httpscaledobject.schema.json).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
SCHEMA = json.loads((K8S / "httpscaledobject.schema.json").read_text())
# The Kubernetes minor versions AKS supports around now, and the newest kubernetes-validate knows.
K8S_VERSIONS = sorted({"1.32.0", kubernetes_validate.latest_version()})

spec = importlib.util.spec_from_file_location("service_gen", K8S / "service_gen.py")
service_gen = importlib.util.module_from_spec(spec)
sys.modules["service_gen"] = service_gen
spec.loader.exec_module(service_gen)


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def validate(doc: dict) -> None:
    if doc["kind"] == "HTTPScaledObject":
        jsonschema.Draft202012Validator(SCHEMA).validate(doc)
        replicas = doc["spec"].get("replicas", {})
        assert replicas.get("min", 0) <= replicas.get("max", 100)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def by_kind(docs: list[dict]) -> dict[str, dict]:
    kinds = {}
    for d in docs:
        assert d["kind"] not in kinds, f"two {d['kind']} objects"
        kinds[d["kind"]] = d
    return kinds


def committed_manifests() -> list[tuple[Path, dict]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = []
    for resource in kustomization["resources"]:
        path = K8S / resource
        out += [(path, d) for d in documents(path.read_text())]
    return out


def test_kubernetes_validate_is_strict():
    """The check below would be hollow if unknown fields passed."""
    bad = service_gen.service(service_gen.ServiceSpec(model=None))
    bad["spec"]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[0], strict=True)


def test_every_committed_manifest_validates():
    manifests = committed_manifests()
    kinds = {d["kind"] for _, d in manifests}
    assert {"Namespace", "Deployment", "Service", "NetworkPolicy", "HTTPScaledObject", "Ingress"} <= kinds
    for path, doc in manifests:
        validate(doc)
    services = sorted((K8S / "services").glob("*.yaml"))
    listed = {p for p, _ in manifests}
    assert set(services) <= listed, "a generated service is not listed in kustomization.yaml"


def test_default_service_is_the_generators_output():
    """infra/k8s/services/sids-ml-backend.yaml is generated: it must not drift from the generator."""
    expected = service_gen.render(service_gen.ServiceSpec(model=None))
    assert (K8S / "services" / "sids-ml-backend.yaml").read_text() == expected


def test_default_service_runs_as_the_old_service_did():
    kinds = by_kind(documents((K8S / "services" / "sids-ml-backend.yaml").read_text()))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "1", "memory": "2Gi"}}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert "replicas" not in kinds["Deployment"]["spec"], "KEDA owns the replica count"
    assert not any(e["name"] == "SERVICE_MODEL" for e in container["env"])
    hso = kinds["HTTPScaledObject"]["spec"]
    assert hso["replicas"] == {"min": 1, "max": 6}
    assert hso["pathPrefixes"] == ["/"]
    assert hso["scalingMetric"] == {"concurrency": {"targetValue": 5}}
    assert hso["scaleTargetRef"]["service"] == kinds["Service"]["metadata"]["name"]
    assert hso["scaleTargetRef"]["port"] == kinds["Service"]["spec"]["ports"][0]["port"] == container["ports"][0]["containerPort"]
    ingress = kinds["Ingress"]
    assert ingress["metadata"]["namespace"] == "keda"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "keda-add-ons-http-interceptor-proxy", "port": {"number": 8080}}
    # The image listens where the manifests send traffic.
    assert "ASPNETCORE_URLS=http://+:8080" in (ROOT / "Dockerfile").read_text()


def sample_model_docs(tmp_path: Path, *extra: str) -> tuple[list[dict], Path]:
    """Run the generator as a user would, for the sample model, into a scratch copy of infra/k8s."""
    out = tmp_path / "k8s"
    (out / "services").mkdir(parents=True)
    (out / "kustomization.yaml").write_text((K8S / "kustomization.yaml").read_text())
    done = subprocess.run([sys.executable, str(K8S / "service_gen.py"), "sampleapi", *extra, "--out-dir", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    written = out / "services" / "sids-ml-sampleapi.yaml"
    return documents(written.read_text()), out


def test_generator_writes_a_service_for_one_model_and_its_prefix_only(tmp_path):
    docs, out = sample_model_docs(tmp_path, "--cpu-request", "250m", "--memory-request", "512Mi",
                                  "--cpu-limit", "2", "--memory-limit", "3Gi",
                                  "--min-replicas", "0", "--max-replicas", "3", "--target-pending-requests", "2")
    for doc in docs:
        validate(doc)
    kinds = by_kind(docs)
    assert set(kinds) == {"Deployment", "Service", "NetworkPolicy", "HTTPScaledObject", "Ingress"}
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "SERVICE_MODEL", "value": "sampleapi"} in container["env"]
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"},
                                      "limits": {"cpu": "2", "memory": "3Gi"}}
    hso = kinds["HTTPScaledObject"]["spec"]
    assert hso["pathPrefixes"] == ["/sampleapi"]
    assert hso["replicas"] == {"min": 0, "max": 3}
    assert hso["scalingMetric"]["concurrency"]["targetValue"] == 2
    assert hso["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"] == "sids-ml-sampleapi"
    paths = [p for rule in kinds["Ingress"]["spec"]["rules"] for p in rule["http"]["paths"]]
    assert [(p["path"], p["pathType"]) for p in paths] == [("/sampleapi", "Prefix")]
    # Listed for CI, next to what was there.
    resources = yaml.safe_load((out / "kustomization.yaml").read_text())["resources"]
    assert resources == ["namespace.yaml", "services/sids-ml-backend.yaml", "services/sids-ml-sampleapi.yaml"]


def test_generator_mounts_a_dataset_volume_instead_of_blob(tmp_path):
    docs, _ = sample_model_docs(tmp_path, "--dataset-volume", "wdi-files", "--dataset-subpath", "wdi")
    for doc in docs:
        validate(doc)
    pod = by_kind(docs)["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["DATASET_PATH"] == "/mnt/datasets/wdi"
    assert "DATASET_BLOB_ACCOUNT_URL" not in env
    assert {"name": "datasets", "persistentVolumeClaim": {"claimName": "wdi-files", "readOnly": True}} in pod["volumes"]
    # no blob to read, but telemetry is still published with the workload identity
    assert by_kind(docs)["Deployment"]["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"


def test_generator_asks_when_interactive(tmp_path):
    answers = iter(["sampleapi", "", "750m", "", "", "", "2", "4", "3", "blob", "datasets", "sample", "api.example.org"])
    args = service_gen._parser().parse_args(["--interactive"])
    spec = service_gen.spec_from_args(service_gen.interactive(args, read=lambda prompt: next(answers)))
    assert (spec.model, spec.service_name, spec.cpu_request, spec.memory_request) == ("sampleapi", "sids-ml-sampleapi", "750m", "1Gi")
    assert (spec.min_replicas, spec.max_replicas, spec.target_pending_requests) == (2, 4, 3)
    assert (spec.dataset_container, spec.dataset_prefix, spec.host) == ("datasets", "sample", "api.example.org")
    docs = documents(service_gen.render(spec))
    for doc in docs:
        validate(doc)
    kinds = by_kind(docs)
    assert kinds["HTTPScaledObject"]["spec"]["hosts"] == ["api.example.org"]
    assert kinds["Ingress"]["spec"]["rules"][0]["host"] == "api.example.org"
    assert "--cpu-request 750m" in service_gen.command_line(spec)


@pytest.mark.parametrize("argv, message", [
    (["nosuchmodel"], "names no model"),
    (["sampleapi", "--cpu-request", "2", "--cpu-limit", "1"], "CPU request exceeds"),
    (["sampleapi", "--min-replicas", "4", "--max-replicas", "2"], "replicas"),
    (["sampleapi", "--memory-limit", "lots"], "not a Kubernetes quantity"),
])
def test_generator_refuses_bad_input(argv, message, capsys):
    assert service_gen.main([*argv, "--stdout"]) == 2
    assert message in capsys.readouterr().err


def _valid_hso() -> dict:
    return service_gen.http_scaled_object(service_gen.ServiceSpec(model="m", prefix="m", service_name="sids-ml-m"))


@pytest.mark.parametrize("mutate", [
    lambda d: d["spec"].pop("scaleTargetRef"),
    lambda d: d["spec"]["scaleTargetRef"].pop("service"),
    lambda d: d["spec"]["scaleTargetRef"].update(portName="http"),  # port and portName together
    lambda d: d["spec"]["scaleTargetRef"].pop("port"),  # neither
    lambda d: d["spec"]["scalingMetric"].update(requestRate={"targetValue": 10}),  # both metrics
    lambda d: d["spec"]["replicas"].update(min="1"),
    lambda d: d["spec"].update(pathPrefix=["/m"]),  # a misspelt field the API server would drop silently
    lambda d: d["spec"].update(pathPrefixes=["m"]),
    lambda d: d.update(apiVersion="http.keda.sh/v1beta1"),
    lambda d: d["spec"]["scalingMetric"].update(concurrency={"targetValue": 0}),
], ids=["no-target", "no-service", "port-and-portName", "no-port", "two-metrics", "string-min",
        "unknown-field", "relative-prefix", "api-version", "zero-target"])
def test_hso_schema_rejects_what_the_add_on_would_not_do(mutate):
    assert_schema_rejects(SCHEMA, _valid_hso(), mutate)


def assert_schema_rejects(schema: dict, doc: dict, mutate) -> None:
    """``doc`` validates against ``schema``, and no longer once ``mutate`` changed it."""
    jsonschema.Draft202012Validator(schema).validate(doc)
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(doc)


def test_hso_schema_is_a_valid_schema_and_accepts_the_documented_example():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    example = {  # the reference document's example (KEDA HTTP add-on docs/ref, v0.13.0)
        "kind": "HTTPScaledObject", "apiVersion": "http.keda.sh/v1alpha1",
        "metadata": {"name": "xkcd", "annotations": {"httpscaledobject.keda.sh/skip-scaledobject-creation": "false"}},
        "spec": {
            "hosts": ["myhost.com", "*.example.com"], "pathPrefixes": ["/test"],
            "headers": [{"name": "X-Custom-Header", "value": "CustomValue"}],
            "scaleTargetRef": {"name": "xkcd", "kind": "Deployment", "apiVersion": "apps/v1", "service": "xkcd", "port": 8080},
            "replicas": {"min": 5, "max": 10}, "scaledownPeriod": 300,
            "scalingMetric": {"requestRate": {"granularity": "1s", "targetValue": 100, "window": "1m"}},
        },
    }
    jsonschema.Draft202012Validator(SCHEMA).validate(example)


def test_pods_publish_telemetry_with_the_workload_identity():
    """Application Insights on AKS takes Entra ID tokens only: the pods get the authentication string from the
    ConfigMap that bootstrap.sh fills from the Bicep outputs, and run with the federated workload identity."""
    kinds = by_kind(documents((K8S / "services" / "sids-ml-backend.yaml").read_text()))
    template = kinds["Deployment"]["spec"]["template"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert template["spec"]["serviceAccountName"] == "sids-ml-backend"
    env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
    for name in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        assert env[name]["valueFrom"]["configMapKeyRef"] == {"name": "sids-ml-backend-config", "key": name,
                                                              "optional": True}
    bootstrap = (ROOT / "infra" / "aks" / "bootstrap.sh").read_text()
    assert 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING="ClientId=${client_id};Authorization=AAD"' in bootstrap
    assert "output appInsightsConnectionString" in bootstrap
    assert "azure.workload.identity/client-id: \"${client_id}\"" in bootstrap
    bicep = (ROOT / "infra" / "aks" / "main.bicep").read_text()
    component = bicep[bicep.index("resource appInsights 'Microsoft.Insights/components@"):]
    assert "DisableLocalAuth: true" in component[:component.index("\n}\n")]
    role = bicep[bicep.index("resource workloadTelemetry "):]
    role = role[:role.index("\n}\n")]
    assert "scope: appInsights" in role and "principalId: workloadIdentity.properties.principalId" in role
    assert "var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'" in bicep
    assert "output appInsightsConnectionString string = appInsights.properties.ConnectionString" in bicep
    federation = bicep[bicep.index("resource federation "):]
    assert "subject: 'system:serviceaccount:${namespace}:${serviceAccountName}'" in federation
