# The SIDS ML Backend as a container for AKS: the Azure Functions host with its Python 3.11 worker,
# running the same function_app.py as the serverless deployment.
#   docker build -t sids-ml-backend .
#   docker run -p 8080:8080 -e DATASET_BLOB_ACCOUNT_URL=... sids-ml-backend      (or mount a dataset folder
#   at /mnt/datasets: docker run -p 8080:8080 -v "$PWD/data/wdi:/mnt/datasets:ro" sids-ml-backend)
# No dataset is baked in (.dockerignore keeps data/ out): pods read it from blob storage or a volume,
# and /health answers 503 until one is loaded. See infra/README.md ("Kubernetes").
FROM mcr.microsoft.com/azure-functions/python:4-python3.11

# AzureWebJobsScriptRoot: where the host finds host.json and function_app.py.
# ASPNETCORE_URLS: listen on 8080, a port a non-root user may bind.
# AzureWebJobsSecretStorageType=files: host keys on local disk, so the host needs no storage account
#   (every function is anonymous; the keys guard only the host's admin API, which is not exposed).
# DATASET_PATH: where a dataset volume is mounted; DATASET_BLOB_ACCOUNT_URL (set by the manifests) wins over it.
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    AzureWebJobsFeatureFlags=EnableWorkerIndexing \
    AzureWebJobsSecretStorageType=files \
    FUNCTIONS_WORKER_RUNTIME=python \
    ASPNETCORE_URLS=http://+:8080 \
    HOME=/home \
    DATASET_PATH=/mnt/datasets \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, so that a code change reuses this layer: the lock (requirements.txt and everything
# it needs, pinned with hashes; make lock), so the image holds exactly the tested set.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock

COPY . /home/site/wwwroot

# A non-root user. The host writes its key sentinel under /azure-functions-host/Secrets and its
# data under $HOME/data; the code itself stays read-only to the user.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --home-dir /home --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /azure-functions-host/Secrets /home/data /mnt/datasets \
    && chown -R 10001:10001 /azure-functions-host/Secrets /home/data \
    && chown 10001:10001 /home
USER 10001:10001

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]
