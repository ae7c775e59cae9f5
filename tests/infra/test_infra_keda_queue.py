"""The AI Mode queue workers on AKS: a Deployment scaled by a KEDA ScaledObject with the azure-queue scaler.

Core objects are validated against the Kubernetes API schemas (strict), the KEDA objects against the project's
schemas of KEDA's CRDs (infra/k8s/scaledobject.schema.json, triggerauthentication.schema.json), and the
worker's queue against the app's queue-triggered function.
"""
from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest

from test_infra_k8s import K8S, K8S_VERSIONS, assert_schema_rejects, by_kind, documents, service_gen

SCALED_OBJECT = json.loads((K8S / "scaledobject.schema.json").read_text())
TRIGGER_AUTH = json.loads((K8S / "triggerauthentication.schema.json").read_text())
ACCOUNT = "stkexample0001"


def validate(doc: dict) -> None:
    if doc["kind"] == "ScaledObject":
        jsonschema.Draft202012Validator(SCALED_OBJECT).validate(doc)
        assert doc["spec"].get("minReplicaCount", 0) <= doc["spec"].get("maxReplicaCount", 100)  # the CRD's CEL rule
    elif doc["kind"] == "TriggerAuthentication":
        jsonschema.Draft202012Validator(TRIGGER_AUTH).validate(doc)
    else:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def worker_docs(*extra: str) -> list[dict]:
    args = service_gen._parser().parse_args(["aimode", "--queue-worker", "aimode", "--storage-account", ACCOUNT, *extra])
    return documents(service_gen.render(service_gen.spec_from_args(args)))


def test_queue_worker_manifests_validate_and_scale_on_the_apps_queue():
    from blueprints import aimode

    docs = worker_docs("--min-replicas", "0", "--max-replicas", "10", "--queue-length", "1")
    for doc in docs:
        validate(doc)
    kinds = by_kind(docs)
    assert set(kinds) == {"Deployment", "NetworkPolicy", "TriggerAuthentication", "ScaledObject"}  # no Service, no route
    deployment, scaled = kinds["Deployment"], kinds["ScaledObject"]["spec"]
    assert deployment["metadata"]["name"] == "sids-ml-aimode-worker" == scaled["scaleTargetRef"]["name"]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "azure-queue"
    assert trigger["metadata"] == {"queueName": aimode.QUEUE, "queueLength": "1", "accountName": ACCOUNT}
    assert trigger["authenticationRef"]["name"] == kinds["TriggerAuthentication"]["metadata"]["name"]
    assert kinds["TriggerAuthentication"]["spec"] == {"podIdentity": {"provider": "azure-workload"}}
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (0, 10)
    pod = deployment["spec"]["template"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["SERVICE_MODEL"] == "aimode"
    # the queue trigger's connection (AzureWebJobsStorage) as an identity-based connection: no keys
    assert env[f"{aimode.CONNECTION}__accountName"] == ACCOUNT
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert kinds["NetworkPolicy"]["spec"]["ingress"] == []


@pytest.mark.parametrize("argv, message", [
    (["aimode", "--queue-worker", "aimode"], "--storage-account"),
    (["aimode", "--queue-worker", "Bad_Queue", "--storage-account", ACCOUNT], "queue name"),
    (["--all-models", "--queue-worker", "aimode", "--storage-account", ACCOUNT], "serves one model"),
])
def test_generator_refuses_a_bad_queue_worker(argv, message, capsys):
    assert service_gen.main([*argv, "--stdout"]) == 2
    assert message in capsys.readouterr().err


def _scaled() -> dict:
    return by_kind(worker_docs())["ScaledObject"]


@pytest.mark.parametrize("mutate", [
    lambda d: d["spec"].pop("scaleTargetRef"),
    lambda d: d["spec"]["scaleTargetRef"].pop("name"),
    lambda d: d["spec"].update(triggers=[]),
    lambda d: d["spec"]["triggers"][0].pop("type"),
    lambda d: d["spec"]["triggers"][0]["metadata"].update(queueLength=2),  # metadata values are strings
    lambda d: d["spec"]["triggers"][0]["metadata"].pop("queueName"),
    lambda d: d["spec"]["triggers"][0]["metadata"].pop("accountName"),  # no account, no connection
    lambda d: d["spec"]["triggers"][0]["metadata"].update(queuename="aimode"),  # misspelt: the scaler ignores it
    lambda d: d["spec"].update(maxReplicaCount=0),
    lambda d: d["spec"].update(pollingInterval=0),
    lambda d: d["spec"].update(minReplicas=0),  # the HTTPScaledObject's spelling, not the ScaledObject's
    lambda d: d["spec"]["triggers"][0]["authenticationRef"].update(kind="Secret"),
    lambda d: d.update(apiVersion="keda.sh/v1beta1"),
], ids=["no-target", "no-target-name", "no-trigger", "no-type", "numeric-metadata", "no-queue", "no-account",
        "misspelt-metadata", "zero-max", "zero-polling", "unknown-field", "auth-kind", "api-version"])
def test_scaledobject_schema_rejects_what_keda_would_not_do(mutate):
    assert_schema_rejects(SCALED_OBJECT, _scaled(), mutate)


def test_keda_schemas_are_valid_and_accept_other_documented_shapes():
    jsonschema.Draft202012Validator.check_schema(SCALED_OBJECT)
    jsonschema.Draft202012Validator.check_schema(TRIGGER_AUTH)
    other = {  # a connection from the container's environment instead of an identity, and the optional fields
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "worker"},
        "spec": {"scaleTargetRef": {"name": "worker"}, "idleReplicaCount": 0, "minReplicaCount": 1,
                 "maxReplicaCount": 4, "fallback": {"failureThreshold": 3, "replicas": 2},
                 "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {}}},
                 "triggers": [{"type": "azure-queue", "metadata": {"queueName": "orders", "queueLength": "5",
                                                                   "activationQueueLength": "1",
                                                                   "connectionFromEnv": "AzureWebJobsStorage",
                                                                   "queueLengthStrategy": "visibleonly"}},
                              {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}]}}
    jsonschema.Draft202012Validator(SCALED_OBJECT).validate(other)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(TRIGGER_AUTH).validate(
            {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication", "metadata": {"name": "a"},
             "spec": {"podIdentity": {"provider": "azure"}}})  # the removed aad-pod-identity provider
