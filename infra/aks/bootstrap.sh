#!/usr/bin/env bash
# Prepares an AKS cluster made by infra/aks/main.bicep for the manifests in infra/k8s:
#   1. KEDA and the KEDA HTTP add-on (Helm, namespace keda, pinned chart versions);
#   2. the namespace, the workload-identity service account and the ConfigMap the pods read,
#      from the outputs of the Bicep deployment (dataset account, Application Insights connection
#      string, and APPLICATIONINSIGHTS_AUTHENTICATION_STRING naming the workload identity: the
#      component takes Entra ID tokens only).
# Idempotent: CI runs it before every rollout. Needs az, kubectl (context set to the cluster) and helm.
#   RESOURCE_GROUP=<rg> [DEPLOYMENT=aks] [CORS_ALLOWED_ORIGINS=...] [APPLICATIONINSIGHTS_CONNECTION_STRING=...] \
#     infra/aks/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${RESOURCE_GROUP:?set RESOURCE_GROUP to the resource group of the AKS deployment}"
DEPLOYMENT=${DEPLOYMENT:-aks}
KEDA_CHART_VERSION=${KEDA_CHART_VERSION:-2.17.0}
HTTP_ADDON_CHART_VERSION=${HTTP_ADDON_CHART_VERSION:-0.10.0}

output() {
  az deployment group show -g "$RESOURCE_GROUP" -n "$DEPLOYMENT" --query "properties.outputs.$1.value" -o tsv
}
namespace=$(output namespace)
service_account=$(output serviceAccountName)
client_id=$(output workloadClientId)
account_url=$(output datasetAccountUrl)
# An older deployment has no component: then telemetry stays off unless the variable is given.
insights=${APPLICATIONINSIGHTS_CONNECTION_STRING:-$(output appInsightsConnectionString 2>/dev/null || true)}

helm repo add kedacore https://kedacore.github.io/charts --force-update >/dev/null
helm upgrade --install keda kedacore/keda --namespace keda --create-namespace \
  --version "$KEDA_CHART_VERSION" --wait
# The interceptor proxies every request: let it wait as long as a model fit may take (host.json
# functionTimeout is 10 minutes) and give a cold deployment two minutes to get a ready pod.
helm upgrade --install http-add-on kedacore/keda-add-ons-http --namespace keda \
  --version "$HTTP_ADDON_CHART_VERSION" \
  --set interceptor.responseHeaderTimeout=600s \
  --set interceptor.replicas.waitTimeout=120s \
  --wait

kubectl apply -f infra/k8s/namespace.yaml
kubectl apply -f - <<YAML
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ${service_account}
  namespace: ${namespace}
  labels:
    app.kubernetes.io/part-of: sids-ml-backend
  annotations:
    azure.workload.identity/client-id: "${client_id}"
automountServiceAccountToken: false
YAML

config=(--from-literal=DATASET_BLOB_ACCOUNT_URL="$account_url")
[ -n "${CORS_ALLOWED_ORIGINS:-}" ] && config+=(--from-literal=CORS_ALLOWED_ORIGINS="$CORS_ALLOWED_ORIGINS")
if [ -n "$insights" ]; then
  config+=(--from-literal=APPLICATIONINSIGHTS_CONNECTION_STRING="$insights")
  config+=(--from-literal=APPLICATIONINSIGHTS_AUTHENTICATION_STRING="ClientId=${client_id};Authorization=AAD")
fi
kubectl create configmap sids-ml-backend-config -n "$namespace" "${config[@]}" --dry-run=client -o yaml \
  | kubectl apply -f -
echo "bootstrap: KEDA ${KEDA_CHART_VERSION}, HTTP add-on ${HTTP_ADDON_CHART_VERSION}, namespace ${namespace} ready"
