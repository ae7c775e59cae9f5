#!/bin/sh
# azd postprovision hook (azure.yaml): put the sample WDI dataset in the new `datasets` container,
# only if the container is still empty, so a real dataset is never overwritten.
# azd exports the Bicep outputs (DATASET_CONTAINER_URL) into this script's environment.
set -eu
cd "$(dirname "$0")/../.."
python=.venv/bin/python
[ -x "$python" ] || python=$(command -v python3)
if ! "$python" -c "import azure.identity, azure.storage.blob, pandas" 2>/dev/null; then
  echo "postprovision: run 'make setup' (or pip install -r requirements.txt) first, then:"
  echo "  python infra/scripts/upload_dataset.py data/wdi --container-url $DATASET_CONTAINER_URL"
  exit 0
fi
"$python" infra/scripts/upload_dataset.py data/wdi --container-url "$DATASET_CONTAINER_URL" --if-empty --wait-for-access 300
