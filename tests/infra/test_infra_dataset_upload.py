"""infra/scripts/upload_dataset.py against a real blob service (Azurite): what it uploads is what the
service's blob source then loads."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("upload_dataset", ROOT / "infra" / "scripts" / "upload_dataset.py")
upload_dataset = importlib.util.module_from_spec(spec)
sys.modules["upload_dataset"] = upload_dataset
spec.loader.exec_module(upload_dataset)


def test_upload_then_the_service_loads_it(azurite, capsys):
    from shared.store import BlobSource, DatasetStore

    argv = ["data/wdi", "--connection-string", azurite.connection_string, "--container", "upload-test", "--prefix", "wdi"]
    azurite.service().create_container("upload-test")
    assert upload_dataset.main([str(ROOT / argv[0]), *argv[1:]]) == 0
    names = sorted(b.name for b in azurite.service().get_container_client("upload-test").list_blobs())
    assert names == ["wdi/countryMeta.csv", "wdi/datasetMeta.csv", "wdi/indicatorData.csv",
                     "wdi/indicatorData.parquet", "wdi/indicatorMeta.csv", "wdi/manifest.json"]
    uploads = [line for line in capsys.readouterr().out.splitlines() if " -> " in line]
    assert len(uploads) == 6 and uploads[-1].strip().startswith("manifest -> "), "the manifest is written last"
    assert not (ROOT / "data" / "wdi" / "indicatorData.parquet").exists(), "the copy is uploaded, not written"
    blob = azurite.service().get_blob_client("upload-test", "wdi/indicatorData.csv").get_blob_properties()
    assert blob.content_settings.content_type == "text/csv"
    assert blob.size == (ROOT / "data" / "wdi" / "indicatorData.csv").stat().st_size

    store = DatasetStore(BlobSource("upload-test", "wdi", connection_string=azurite.connection_string))
    assert store.refresh()
    status = store.status()
    assert status["status"] == "ok" and status["rows"] > 0 and status["indicators"] > 0
    assert status["dataset_version"] == upload_dataset.make_manifest(
        upload_dataset.publish_files(ROOT / "data" / "wdi"))["dataset_version"]

    # --if-empty never overwrites a dataset that is already there.
    capsys.readouterr()
    assert upload_dataset.main([str(ROOT / argv[0]), *argv[1:], "--if-empty"]) == 0
    assert "nothing uploaded" in capsys.readouterr().out


def test_no_parquet_uploads_the_folder_as_it_is(azurite):
    azurite.service().create_container("upload-plain")
    argv = ["--connection-string", azurite.connection_string, "--container", "upload-plain", "--no-parquet"]
    assert upload_dataset.main([str(ROOT / "data" / "wdi"), *argv]) == 0
    names = sorted(b.name for b in azurite.service().get_container_client("upload-plain").list_blobs())
    assert names == ["countryMeta.csv", "datasetMeta.csv", "indicatorData.csv", "indicatorMeta.csv", "manifest.json"]


def test_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "indicatorMeta.csv").write_text("x")
    with pytest.raises(SystemExit, match="missing indicatorData.csv, datasetMeta.csv"):
        upload_dataset.dataset_files(tmp_path)
