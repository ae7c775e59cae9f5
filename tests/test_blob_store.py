"""The blob path of the dataset store, against a real Azurite."""
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import AZURITE_KEY, start_local_host, stop_process
from shared.store import BlobSource, DatasetStore

WDI = Path(__file__).resolve().parent.parent / "data" / "wdi"


@pytest.fixture
def published(azurite):
    """A fresh container holding the embedded dataset under a prefix."""
    container = f"ds{uuid.uuid4().hex[:10]}"
    azurite.upload_folder(WDI, container=container, prefix="wdi")
    return container


def source_for(azurite, container):
    return BlobSource(container, "wdi", connection_string=azurite.connection_string, timeout=2)


def test_dataset_loads_from_blob_with_etag_version(azurite, published):
    store = DatasetStore(source_for(azurite, published), refresh_seconds=3600)
    data = store.get()
    assert data.values.shape == (31, 217, 110)
    status = store.status()
    assert status["status"] == "ok"
    assert status["source"].endswith(f"/{published}/wdi/")
    assert AZURITE_KEY not in str(status)


def test_changed_blob_is_reloaded_unchanged_is_not(azurite, published):
    store = DatasetStore(source_for(azurite, published), refresh_seconds=0)
    old = store.get()
    assert store.refresh() is False
    text = (WDI / "indicatorData.csv").read_text().replace("8.57979393", "6.5", 1)
    azurite.service().get_blob_client(published, "wdi/indicatorData.csv").upload_blob(text, overwrite=True)
    assert store.refresh() is True
    assert store.get().version != old.version
    assert store.get().indicator_series("wdi-AG.LND.EL5M.UR.K2").at["ABW", 1990] == 6.5


def test_stopped_storage_means_degraded_then_recovers(azurite, published):
    store = DatasetStore(source_for(azurite, published), refresh_seconds=0)
    good = store.get()
    azurite.stop()
    try:
        store.refresh()
        assert store.get() is good
        status = store.status()
        assert status["status"] == "degraded"
        assert "cannot list" in status["last_error"]
    finally:
        azurite.start()
    store.refresh()
    assert store.status()["status"] == "ok"


def test_local_host_serves_blob_dataset_and_redacts_secrets(azurite, published):
    proc, base, log = start_local_host({
        "DATASET_BLOB_CONNECTION_STRING": azurite.connection_string,
        "DATASET_BLOB_CONTAINER": published,
        "DATASET_BLOB_PREFIX": "wdi",
    })
    try:
        deadline = time.time() + 30
        while (health := httpx.get(base + "/health").json())["status"] != "ok" and time.time() < deadline:
            time.sleep(0.2)
        assert health["status"] == "ok"
        assert health["source"].startswith(f"http://127.0.0.1:{azurite.port}/devstoreaccount1/{published}")
        datasets = httpx.get(base + "/datasets").json()
        assert datasets[0]["code"] == "wdi"
    finally:
        stop_process(proc)
    assert AZURITE_KEY not in log.read_text()
