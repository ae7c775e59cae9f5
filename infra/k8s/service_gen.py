#!/usr/bin/env python3
"""Write the Kubernetes manifests that run one model as its own service on AKS.

    python infra/k8s/service_gen.py twolvlImp --cpu-request 1 --memory-request 2Gi \
        --cpu-limit 2 --memory-limit 4Gi --min-replicas 1 --max-replicas 4
    python infra/k8s/service_gen.py --interactive        # asks for each value
    python infra/k8s/service_gen.py --all-models         # the default service (every model, route /)

For model M it writes ``infra/k8s/services/<service>.yaml`` holding a Deployment (the same image,
with SERVICE_MODEL=M so the instance registers only that model), a Service, a NetworkPolicy that
lets only the add-on's interceptor in, a KEDA HTTP add-on
``HTTPScaledObject`` that scales it on pending requests, and an Ingress that sends M's route
prefix (and nothing else) to the add-on's interceptor, which forwards it to this Service. It also
lists the file in ``infra/k8s/kustomization.yaml`` so that CI deploys it. The dataset comes from a
blob container (read with workload identity) or from a volume (an existing PersistentVolumeClaim).

Only the standard library is used, so any Python 3.9+ runs it. Inside the project's virtual
environment the model name is checked against the models the app registers, and its route
prefix is read from there.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parent.parent

APP = "sids-ml-backend"
NAMESPACE = "sids"
SERVICE_ACCOUNT = "sids-ml-backend"
CLUSTER_CONFIG = "sids-ml-backend-config"  # ConfigMap written by infra/aks/bootstrap.sh from the Bicep outputs
IMAGE = "sids-ml-backend"  # kustomize's `images:` (set by CI) turns this into <registry>/sids-ml-backend@<digest>
IMAGE_TAG = "set-by-ci"
CONTAINER_PORT = 8080  # the Functions host listens here (ASPNETCORE_URLS in the Dockerfile)
INTERCEPTOR_NAMESPACE = "keda"
INTERCEPTOR_SERVICE = "keda-add-ons-http-interceptor-proxy"
INTERCEPTOR_PORT = 8080
INGRESS_CLASS = "webapprouting.kubernetes.azure.com"  # the AKS application routing add-on (managed NGINX)
DATASET_MOUNT = "/mnt/datasets"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


@dataclass
class ServiceSpec:
    """Everything the generator needs for one service. Defaults are the old service's figures."""

    model: str | None  # None: every model (the default service, routed at /)
    prefix: str = ""  # route prefix without slashes; "" for the default service
    service_name: str = APP
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str = "1"
    memory_limit: str = "2Gi"
    min_replicas: int = 1
    max_replicas: int = 6
    target_pending_requests: int = 5
    scaledown_seconds: int = 300
    dataset_container: str | None = "datasets"
    dataset_prefix: str = ""
    dataset_volume: str | None = None  # name of an existing PersistentVolumeClaim
    dataset_subpath: str = ""
    host: str | None = None
    namespace: str = NAMESPACE
    queue: str | None = None            # a queue worker: the queue its queue-triggered functions read (KEDA azure-queue)
    storage_account: str | None = None  # the queue's storage account (workload identity, no keys)
    queue_length: int = 2               # messages per replica KEDA aims for (a message is one CPU-bound computation)

    def check(self) -> None:
        problems = []
        if not _DNS_LABEL.match(self.service_name):
            problems.append(f"service name {self.service_name!r} must be a DNS label (lowercase letters, digits, '-')")
        if not _DNS_LABEL.match(self.namespace):
            problems.append(f"namespace {self.namespace!r} must be a DNS label")
        for name in ("cpu_request", "memory_request", "cpu_limit", "memory_limit"):
            if not _QUANTITY.match(str(getattr(self, name))):
                problems.append(f"{name.replace('_', ' ')} {getattr(self, name)!r} is not a Kubernetes quantity")
        if _QUANTITY.match(self.cpu_request) and _QUANTITY.match(self.cpu_limit):
            if _cpu(self.cpu_request) > _cpu(self.cpu_limit):
                problems.append("CPU request exceeds the CPU limit")
        if _QUANTITY.match(self.memory_request) and _QUANTITY.match(self.memory_limit):
            if _bytes(self.memory_request) > _bytes(self.memory_limit):
                problems.append("memory request exceeds the memory limit")
        if self.min_replicas < 0 or self.max_replicas < 1 or self.min_replicas > self.max_replicas:
            problems.append(f"replicas must satisfy 0 <= min <= max and max >= 1 (got {self.min_replicas}..{self.max_replicas})")
        if self.target_pending_requests < 1:
            problems.append("the pending-request target must be at least 1")
        if (self.dataset_container is None) == (self.dataset_volume is None):
            problems.append("give exactly one dataset source: a blob container or a volume (PersistentVolumeClaim)")
        if self.dataset_volume is not None and not _DNS_LABEL.match(self.dataset_volume):
            problems.append(f"volume claim {self.dataset_volume!r} must be a DNS label")
        if self.model is not None and not self.prefix:
            problems.append("a model service needs a route prefix")
        if self.queue is not None:
            if self.model is None:
                problems.append("a queue worker serves one model: name it")
            if not re.match(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$", self.queue):
                problems.append(f"queue name {self.queue!r} is not an Azure Storage queue name")
            if not re.match(r"^[a-z0-9]{3,24}$", self.storage_account or ""):
                problems.append("a queue worker needs --storage-account (3-24 lowercase letters and digits)")
            if self.queue_length < 1:
                problems.append("the queue length per replica must be at least 1")
        if self.prefix and not re.match(r"^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$", self.prefix):
            problems.append(f"route prefix {self.prefix!r} must be URL path segments")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def path(self) -> str:
        return "/" + self.prefix if self.prefix else "/"


def _cpu(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def _bytes(q: str) -> float:
    m = _QUANTITY.match(q)
    units = {None: 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3}
    return float(m.group(1)) * units[m.group(3)]


def service_name_for(model: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return f"sids-ml-{slug}"[:63].rstrip("-")


def resolve_model(model: str) -> tuple[str, str] | None:
    """(name, prefix) of a registered model, or None when the app cannot be imported here."""
    sys.path.insert(0, str(PROJECT_ROOT))
    try:
        from blueprints import model_blueprints

        found = model_blueprints(model)  # raises ValueError naming the known models
    except ImportError as exc:  # not in the project's environment: the caller falls back to --prefix
        print(f"service_gen: cannot import the app here ({exc}); taking the prefix from --prefix or the name",
              file=sys.stderr)
        return None
    finally:
        sys.path.remove(str(PROJECT_ROOT))
    return found[0].name, found[0].prefix


# --- the manifests ---------------------------------------------------------------------------------

def _labels(spec: ServiceSpec) -> dict:
    return {
        "app.kubernetes.io/name": spec.service_name,
        "app.kubernetes.io/part-of": APP,
        "app.kubernetes.io/component": "api" if spec.model is None else "model",
    }


def _env(spec: ServiceSpec) -> list[dict]:
    env = []
    if spec.model is not None:
        env.append({"name": "SERVICE_MODEL", "value": spec.model})
    if spec.dataset_container is not None:
        env += [
            {"name": "DATASET_BLOB_ACCOUNT_URL",
             "valueFrom": {"configMapKeyRef": {"name": CLUSTER_CONFIG, "key": "DATASET_BLOB_ACCOUNT_URL"}}},
            {"name": "DATASET_BLOB_CONTAINER", "value": spec.dataset_container},
        ]
        if spec.dataset_prefix:
            env.append({"name": "DATASET_BLOB_PREFIX", "value": spec.dataset_prefix.strip("/")})
    else:
        env.append({"name": "DATASET_PATH", "value": DATASET_MOUNT + ("/" + spec.dataset_subpath.strip("/") if spec.dataset_subpath else "")})
    env += [
        {"name": "DATASET_REFRESH_SECONDS", "value": "300"},
        {"name": "CORS_ALLOWED_ORIGINS",
         "valueFrom": {"configMapKeyRef": {"name": CLUSTER_CONFIG, "key": "CORS_ALLOWED_ORIGINS", "optional": True}}},
        {"name": "APPLICATIONINSIGHTS_CONNECTION_STRING",
         "valueFrom": {"configMapKeyRef": {"name": CLUSTER_CONFIG, "key": "APPLICATIONINSIGHTS_CONNECTION_STRING",
                                           "optional": True}}},
        # Entra ID ingestion with the workload identity (the component has local authentication off)
        {"name": "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
         "valueFrom": {"configMapKeyRef": {"name": CLUSTER_CONFIG, "key": "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
                                           "optional": True}}},
    ]
    return env


def _probe(period: int, failures: int, timeout: int = 5) -> dict:
    return {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures}


def deployment(spec: ServiceSpec) -> dict:
    labels = _labels(spec)
    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    if spec.dataset_volume is not None:
        volumes.append({"name": "datasets", "persistentVolumeClaim": {"claimName": spec.dataset_volume, "readOnly": True}})
        mounts.append({"name": "datasets", "mountPath": DATASET_MOUNT, "readOnly": True})
    # Every pod runs with the workload identity: it reads blob datasets and publishes telemetry with it
    # (the webhook injects AZURE_CLIENT_ID and a token file).
    pod_labels = dict(labels, **{"azure.workload.identity/use": "true"})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": spec.service_name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": {
                "checkov.io/skip1": "CKV_K8S_43=CI deploys the image by digest (kustomize edit set image ...@sha256:...); the file holds a placeholder",
                "checkov.io/skip2": "CKV_K8S_22=the Functions host writes under /home and /azure-functions-host/Secrets at run time; /tmp is an emptyDir",
            },
        },
        "spec": {
            # No replicas: the HTTPScaledObject (through KEDA's HPA) owns the count, and apply must not reset it.
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app.kubernetes.io/name": spec.service_name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 120,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [{
                        "name": "api",
                        "image": f"{IMAGE}:{IMAGE_TAG}",
                        "imagePullPolicy": "Always",
                        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
                        "env": _env(spec),
                        "resources": {
                            "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
                            "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
                        },
                        # /health answers 503 until a dataset is loaded: the pod gets traffic only then.
                        "startupProbe": _probe(period=10, failures=30),
                        "readinessProbe": _probe(period=10, failures=3),
                        "livenessProbe": _probe(period=30, failures=5),
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "privileged": False,
                            "readOnlyRootFilesystem": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def service(spec: ServiceSpec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.service_name, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": spec.service_name},
            "ports": [{"name": "http", "port": CONTAINER_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def http_scaled_object(spec: ServiceSpec) -> dict:
    body = {
        "apiVersion": "http.keda.sh/v1alpha1",
        "kind": "HTTPScaledObject",
        "metadata": {"name": spec.service_name, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {
            "pathPrefixes": [spec.path],
            "scaleTargetRef": {
                "name": spec.service_name,
                "kind": "Deployment",
                "apiVersion": "apps/v1",
                "service": spec.service_name,
                "port": CONTAINER_PORT,
            },
            "replicas": {"min": spec.min_replicas, "max": spec.max_replicas},
            "scaledownPeriod": spec.scaledown_seconds,
            "scalingMetric": {"concurrency": {"targetValue": spec.target_pending_requests}},
        },
    }
    if spec.host:
        body["spec"] = {"hosts": [spec.host], **body["spec"]}
    return body


def ingress(spec: ServiceSpec) -> dict:
    """The route for this service's prefix, to the interceptor (which lives in the keda namespace)."""
    rule = {"http": {"paths": [{
        "path": spec.path,
        "pathType": "Prefix",
        "backend": {"service": {"name": INTERCEPTOR_SERVICE, "port": {"number": INTERCEPTOR_PORT}}},
    }]}}
    if spec.host:
        rule = {"host": spec.host, **rule}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": spec.service_name,
            "namespace": INTERCEPTOR_NAMESPACE,
            "labels": _labels(spec),
            "annotations": {
                # Model fits can take minutes (host.json functionTimeout is 10 minutes); bodies stay under MAX_BODY_BYTES.
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "600",
                "nginx.ingress.kubernetes.io/proxy-send-timeout": "600",
                "nginx.ingress.kubernetes.io/proxy-body-size": "1m",
            },
        },
        "spec": {"ingressClassName": INGRESS_CLASS, "rules": [rule]},
    }


def network_policy(spec: ServiceSpec) -> dict:
    """Only the interceptor (namespace keda) may open connections to the pods; egress stays open
    (Microsoft Entra ID and blob storage)."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": spec.service_name, "namespace": spec.namespace, "labels": _labels(spec)},
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": spec.service_name}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INTERCEPTOR_NAMESPACE}}}],
                "ports": [{"port": "http", "protocol": "TCP"}],
            }],
        },
    }


def queue_worker(spec: ServiceSpec) -> list[dict]:
    """A model's queue-triggered functions as their own Deployment, scaled by KEDA on the queue's length.

    The Functions host in the image listens to the queue (identity-based connection: the account name, the
    pod's workload identity); KEDA's azure-queue scaler adds replicas per ``queue_length`` messages (visible or
    being processed) and removes them all when the queue is empty. The workers take no traffic: their
    NetworkPolicy admits nothing. A scaled-in pod's message comes back after its lease (at least once)."""
    worker = deployment(spec)
    for labels in (worker["metadata"]["labels"], worker["spec"]["template"]["metadata"]["labels"]):
        labels["app.kubernetes.io/component"] = "worker"
    worker["metadata"]["annotations"]["keda.sh/scaled-by"] = "ScaledObject " + spec.service_name
    container = worker["spec"]["template"]["spec"]["containers"][0]
    container["env"] += [
        {"name": "AzureWebJobsStorage__accountName", "value": spec.storage_account},
        # the published sets go to the same account's container (AI_MODE_BLOB_CONTAINER, default ai-mode)
        {"name": "AI_MODE_BLOB_ACCOUNT_URL",
         "valueFrom": {"configMapKeyRef": {"name": CLUSTER_CONFIG, "key": "DATASET_BLOB_ACCOUNT_URL"}}},
    ]
    worker["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] = "true"
    labels = dict(worker["metadata"]["labels"])
    meta = {"name": spec.service_name, "namespace": spec.namespace, "labels": labels}
    closed = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta,
              "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": spec.service_name}},
                       "policyTypes": ["Ingress"], "ingress": []}}
    auth = {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication", "metadata": meta,
            "spec": {"podIdentity": {"provider": "azure-workload"}}}
    scaled = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": meta,
        "spec": {
            "scaleTargetRef": {"name": spec.service_name, "kind": "Deployment", "apiVersion": "apps/v1"},
            "minReplicaCount": spec.min_replicas, "maxReplicaCount": spec.max_replicas,
            "pollingInterval": 15, "cooldownPeriod": spec.scaledown_seconds,
            "triggers": [{"type": "azure-queue", "authenticationRef": {"name": spec.service_name},
                          "metadata": {"queueName": spec.queue, "queueLength": str(spec.queue_length),
                                       "accountName": spec.storage_account}}],
        },
    }
    return [worker, closed, auth, scaled]


def manifests(spec: ServiceSpec) -> list[dict]:
    spec.check()
    if spec.queue is not None:
        return queue_worker(spec)
    return [deployment(spec), service(spec), network_policy(spec), http_scaled_object(spec), ingress(spec)]


# --- a small YAML writer (block style; strings quoted whenever YAML could read them as something else) --

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./:@-]*$")
_NOT_PLAIN = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _NOT_PLAIN:
        return text
    return json.dumps(text)


def to_yaml(value, indent: int = 0) -> str:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return pad + "{}\n"
        out = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{_scalar(key)}:\n{to_yaml(item, indent + 2)}")
            else:
                out.append(f"{pad}{_scalar(key)}: {_inline(item)}\n")
        return "".join(out)
    if isinstance(value, list):
        if not value:
            return pad + "[]\n"
        out = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 2)
                out.append(f"{pad}- {body[indent + 2:]}")
            else:
                out.append(f"{pad}- {_inline(item)}\n")
        return "".join(out)
    return pad + _scalar(value) + "\n"


def _inline(value) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def render(spec: ServiceSpec) -> str:
    what = "every model (the default service)" if spec.model is None else f"model {spec.model!r} alone"
    header = (f"# Generated by infra/k8s/service_gen.py for {what}: edit the command, not this file.\n"
              f"# {command_line(spec)}\n")
    return header + "".join("---\n" + to_yaml(doc) for doc in manifests(spec))


def command_line(spec: ServiceSpec) -> str:
    """The command that regenerates this file (only the options that differ from the defaults)."""
    default = ServiceSpec(model=spec.model)
    parts = ["python infra/k8s/service_gen.py", "--all-models" if spec.model is None else spec.model]
    worker = "-worker" if spec.queue else ""
    if spec.model is not None and spec.service_name != service_name_for(spec.model) + worker:
        parts.append(f"--service-name {spec.service_name}")
    if spec.queue:
        parts.append(f"--queue-worker {spec.queue} --storage-account {spec.storage_account}")
        if spec.queue_length != default.queue_length:
            parts.append(f"--queue-length {spec.queue_length}")
    tunable = ("cpu_request", "memory_request", "cpu_limit", "memory_limit", "min_replicas", "max_replicas",
               "target_pending_requests", "scaledown_seconds", "dataset_prefix", "dataset_volume",
               "dataset_subpath", "host", "namespace")
    for name in tunable:
        value = getattr(spec, name)
        if value != getattr(default, name):
            parts.append(f"--{name.replace('_', '-')} {value}")
    if spec.dataset_volume is None and spec.dataset_container != default.dataset_container:
        parts.append(f"--dataset-container {spec.dataset_container}")
    return " ".join(parts)


def write(spec: ServiceSpec, out_dir: Path = HERE) -> Path:
    """Write services/<name>.yaml under out_dir and list it in out_dir/kustomization.yaml (if there is one)."""
    services_dir = out_dir / "services"
    services_dir.mkdir(parents=True, exist_ok=True)
    target = services_dir / f"{spec.service_name}.yaml"
    target.write_text(render(spec))
    kustomization = out_dir / "kustomization.yaml"
    if kustomization.exists():
        add_to_kustomization(kustomization, target.relative_to(out_dir).as_posix())
    return target


def add_to_kustomization(path: Path, resource: str) -> None:
    """List `resource` under `resources:` (kept sorted after the fixed entries), if it is not there yet."""
    lines = path.read_text().splitlines()
    entry = f"  - {resource}"
    if entry in lines:
        return
    start = lines.index("resources:") + 1
    end = start
    while end < len(lines) and lines[end].startswith("  - "):
        end += 1
    block = lines[start:end]
    fixed = [line for line in block if not line.startswith("  - services/")]
    services = sorted([line for line in block if line.startswith("  - services/")] + [entry])
    path.write_text("\n".join(lines[:start] + fixed + services + lines[end:]) + "\n")


# --- command line ----------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    d = ServiceSpec(model=None)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", nargs="?", help="model name (its blueprint name, e.g. twolvlImp)")
    p.add_argument("--all-models", action="store_true", help="the default service: every model, routed at /")
    p.add_argument("-i", "--interactive", action="store_true", help="ask for each value (the default when no model is given)")
    p.add_argument("--prefix", help="route prefix, when the model cannot be looked up here (default: the model's own)")
    p.add_argument("--service-name", help="Kubernetes name of the Deployment/Service (default: sids-ml-<model>)")
    p.add_argument("--cpu-request", default=d.cpu_request)
    p.add_argument("--memory-request", default=d.memory_request)
    p.add_argument("--cpu-limit", default=d.cpu_limit)
    p.add_argument("--memory-limit", default=d.memory_limit)
    p.add_argument("--min-replicas", type=int, default=d.min_replicas)
    p.add_argument("--max-replicas", type=int, default=d.max_replicas)
    p.add_argument("--target-pending-requests", type=int, default=d.target_pending_requests,
                   help="in-flight requests per replica that KEDA aims for")
    p.add_argument("--scaledown-seconds", type=int, default=d.scaledown_seconds)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset-container", help=f"blob container of the dataset (default: {d.dataset_container})")
    src.add_argument("--dataset-volume", help="an existing PersistentVolumeClaim holding the dataset, mounted read-only")
    p.add_argument("--dataset-prefix", default="", help="folder of the dataset inside the container")
    p.add_argument("--dataset-subpath", default="", help="folder of the dataset inside the volume")
    p.add_argument("--host", help="public host name to route (default: any host)")
    p.add_argument("--namespace", default=NAMESPACE)
    p.add_argument("--queue-worker", metavar="QUEUE", dest="queue",
                   help="write the model's queue workers instead (KEDA azure-queue ScaledObject on QUEUE)")
    p.add_argument("--storage-account", help="the queue's storage account (with --queue-worker)")
    p.add_argument("--queue-length", type=int, default=d.queue_length, help="messages per worker replica")
    p.add_argument("--out-dir", type=Path, default=HERE,
                   help="folder holding kustomization.yaml; the file goes to its services/ folder")
    p.add_argument("--stdout", action="store_true", help="print the manifests instead of writing them")
    return p


def _ask(prompt: str, default, cast=str, read=input):
    while True:
        raw = read(f"{prompt} [{'' if default is None else default}]: ").strip()
        if not raw:
            return default
        try:
            return cast(raw)
        except ValueError:
            print(f"  not a valid value: {raw!r}")


def interactive(args: argparse.Namespace, read=input) -> argparse.Namespace:
    """Fill in args by asking, as the old service_gen.py did."""
    args.model = _ask("Model name (blank: every model at /)", args.model, read=read) or None
    args.all_models = args.model is None
    if args.model and resolve_model(args.model) is None:
        args.prefix = _ask("Route prefix", args.prefix or args.model, read=read)
    default_name = APP if args.model is None else service_name_for(args.model)
    args.service_name = _ask("Service name", args.service_name or default_name, read=read)
    args.cpu_request = _ask("Requested CPU", args.cpu_request, read=read)
    args.memory_request = _ask("Requested memory", args.memory_request, read=read)
    args.cpu_limit = _ask("CPU limit", args.cpu_limit, read=read)
    args.memory_limit = _ask("Memory limit", args.memory_limit, read=read)
    args.min_replicas = _ask("Minimum replicas", args.min_replicas, int, read=read)
    args.max_replicas = _ask("Maximum replicas", args.max_replicas, int, read=read)
    args.target_pending_requests = _ask("Target pending requests per replica", args.target_pending_requests, int, read=read)
    kind = _ask("Dataset from a blob container or a volume (blob/volume)", "volume" if args.dataset_volume else "blob",
                read=read).lower()
    if kind.startswith("v"):
        args.dataset_volume = _ask("PersistentVolumeClaim name", args.dataset_volume or "datasets", read=read)
        args.dataset_subpath = _ask("Folder inside the volume", args.dataset_subpath, read=read)
        args.dataset_container = None
    else:
        args.dataset_container = _ask("Blob container", args.dataset_container or "datasets", read=read)
        args.dataset_prefix = _ask("Folder inside the container", args.dataset_prefix, read=read)
        args.dataset_volume = None
    args.host = _ask("Public host name (blank: any)", args.host, read=read) or None
    return args


def spec_from_args(args: argparse.Namespace) -> ServiceSpec:
    if args.all_models or args.model is None:
        model, prefix, name = None, "", args.service_name or APP
    else:
        resolved = resolve_model(args.model)
        if resolved is not None:
            model, prefix = resolved
            if args.prefix and args.prefix.strip("/") != prefix:
                raise ValueError(f"model {model!r} is served under /{prefix}, not /{args.prefix.strip('/')}")
        else:
            model, prefix = args.model, (args.prefix or args.model).strip("/")
        name = args.service_name or service_name_for(model) + ("-worker" if getattr(args, "queue", None) else "")
    container = args.dataset_container if args.dataset_volume is None else None
    if args.dataset_volume is None and container is None:
        container = "datasets"
    return ServiceSpec(
        model=model, prefix=prefix, service_name=name,
        cpu_request=args.cpu_request, memory_request=args.memory_request,
        cpu_limit=args.cpu_limit, memory_limit=args.memory_limit,
        min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        target_pending_requests=args.target_pending_requests, scaledown_seconds=args.scaledown_seconds,
        dataset_container=container, dataset_prefix=args.dataset_prefix,
        dataset_volume=args.dataset_volume, dataset_subpath=args.dataset_subpath,
        host=args.host, namespace=args.namespace,
        queue=getattr(args, "queue", None), storage_account=getattr(args, "storage_account", None),
        queue_length=getattr(args, "queue_length", ServiceSpec.queue_length),
    )


def main(argv: list[str] | None = None, read=input) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.interactive or (args.model is None and not args.all_models):
            args = interactive(args, read=read)
        spec = spec_from_args(args)
        if args.stdout:
            sys.stdout.write(render(spec))
            return 0
        target = write(spec, args.out_dir)
    except ValueError as exc:
        print(f"service_gen: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {target.relative_to(PROJECT_ROOT) if target.is_relative_to(PROJECT_ROOT) else target}")
    print("Commit it: CI applies infra/k8s/kustomization.yaml on main (infra/README.md, 'Kubernetes').")
    return 0


if __name__ == "__main__":
    sys.exit(main())
