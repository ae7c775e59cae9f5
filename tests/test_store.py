"""Dataset parsing and the per-instance store, on local folders."""
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shared.dataset import DEFAULT_SIDS, DatasetFormatError, build_dataset
from shared.errors import DatasetUnavailable
from shared.store import DatasetStore, LocalFolderSource

WDI = Path(__file__).resolve().parent.parent / "data" / "wdi"


def files_of(folder: Path) -> dict:
    return {p.name: str(p) for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def folder(tmp_path):
    target = tmp_path / "ds"
    shutil.copytree(WDI, target)
    return target


def test_embedded_dataset_shape_and_sids(wdi):
    assert wdi.values.shape == (31, 217, 110)
    assert wdi.years[0] == 1990 and wdi.years[-1] == 2020
    assert "JAM" in wdi.sids and "FRA" not in wdi.sids
    assert len(wdi.sids) == 45  # countryMeta's SIDS column, not the built-in list


def test_year_matrix_matches_the_csv(wdi):
    import pandas as pd

    raw = pd.read_csv(WDI / "indicatorData.csv")
    row = raw.dropna(subset=["2015"]).iloc[7]
    value = wdi.year_frame(2015).at[row["Country Code"], row["Indicator Code"]]
    assert value == pytest.approx(row["2015"])
    assert np.isnan(wdi.year_frame(2015).values).sum() > 0


def test_default_sids_used_without_country_meta(folder):
    (folder / "countryMeta.csv").unlink()
    data = build_dataset(files_of(folder))
    assert data.sids == DEFAULT_SIDS


@pytest.mark.parametrize("file, edit, problem", [
    ("indicatorMeta.csv", lambda t: t.replace("Indicator Code,", "Code,", 1), "missing column(s) Indicator Code"),
    ("indicatorData.csv", lambda t: t.replace("8.57979393", "eight", 1), "unparseable number 'eight'"),
    ("indicatorData.csv", lambda t: t + t.splitlines()[1] + "\n", "rows share a key"),
    ("datasetMeta.csv", lambda t: t + t.splitlines()[1] + "\n", "rows share a key"),
])
def test_malformed_file_error_names_file_and_problem(folder, file, edit, problem):
    path = folder / file
    path.write_text(edit(path.read_text()))
    with pytest.raises(DatasetFormatError) as info:
        build_dataset(files_of(folder))
    assert info.value.file == file
    assert problem in str(info.value)


def test_missing_required_file_is_named(folder):
    (folder / "datasetMeta.csv").unlink()
    with pytest.raises(DatasetFormatError, match="datasetMeta.csv: file is missing"):
        build_dataset(files_of(folder))


def test_infinity_in_data_is_treated_as_missing(folder):
    path = folder / "indicatorData.csv"
    path.write_text(path.read_text().replace("8.57979393", "inf", 1))
    data = build_dataset(files_of(folder))
    assert np.isfinite(data.values[~np.isnan(data.values)]).all()


def test_parquet_beside_csv_is_read_instead(folder):
    import pandas as pd

    frame = pd.read_csv(folder / "indicatorData.csv")
    frame.loc[0, "1990"] = 12345.0
    frame.to_parquet(folder / "indicatorData.parquet")
    store = DatasetStore(LocalFolderSource(folder))
    data = store.get()
    code, ind = frame.loc[0, "Country Code"], frame.loc[0, "Indicator Code"]
    assert data.indicator_series(ind).at[code, 1990] == 12345.0


def test_store_loads_once_and_reports_ok(folder):
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=3600)
    first = store.get()
    assert store.get() is first
    status = store.status()
    assert status["status"] == "ok"
    assert status["indicators"] == 110 and status["countries"] == 217 and status["rows"] > 15000
    assert len(status["version"]) == 16


def test_reload_only_when_content_changes_and_swaps_whole_dataset(folder):
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    old = store.get()
    assert store.refresh() is False  # unchanged files: no reload
    path = folder / "indicatorData.csv"
    path.write_text(path.read_text().replace("8.57979393", "9.5", 1))
    assert store.refresh() is True
    new = store.get()
    assert new is not old and new.version != old.version
    assert old.indicator_series("wdi-AG.LND.EL5M.UR.K2").at["ABW", 1990] == pytest.approx(8.57979393)
    assert new.indicator_series("wdi-AG.LND.EL5M.UR.K2").at["ABW", 1990] == 9.5


def test_background_revalidation_when_due(folder):
    now = [0.0]
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=10, clock=lambda: now[0])
    old = store.get()
    path = folder / "indicatorData.csv"
    path.write_text(path.read_text().replace("8.57979393", "7.25", 1))
    now[0] = 5
    assert store.get() is old  # not due yet
    now[0] = 11
    assert store.get() is old  # due: served from the current copy while a thread revalidates
    deadline = time.time() + 10
    while store.get() is old and time.time() < deadline:
        time.sleep(0.05)
    assert store.get().indicator_series("wdi-AG.LND.EL5M.UR.K2").at["ABW", 1990] == 7.25


def test_corrupt_update_keeps_last_good_copy_and_reports_degraded(folder):
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    good = store.get()
    (folder / "indicatorMeta.csv").write_text("nothing,useful\n1,2\n")
    store.refresh()
    assert store.get() is good
    status = store.status()
    assert status["status"] == "degraded"
    assert "indicatorMeta.csv" in status["last_error"]


def test_missing_folder_then_recovery(folder):
    hidden = folder.with_name("moved")
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    store.get()
    folder.rename(hidden)
    store.refresh()
    assert store.status()["status"] == "degraded"
    hidden.rename(folder)
    store.refresh()
    assert store.status()["status"] == "ok"


def test_no_good_copy_means_unavailable_with_the_reason(folder):
    (folder / "indicatorData.csv").write_text("Country Code,Indicator Code,2000\nABW,x,1\nABW,x,2\n")
    store = DatasetStore(LocalFolderSource(folder))
    with pytest.raises(DatasetUnavailable) as info:
        store.get()
    assert "indicatorData.csv" in info.value.msg and "share a key" in info.value.msg
    assert store.status()["status"] == "unavailable"


def test_concurrent_first_requests_load_once(folder):
    loads = []
    source = LocalFolderSource(folder)
    original = source.fetch
    source.fetch = lambda tags: loads.append(1) or original(tags)
    store = DatasetStore(source, refresh_seconds=3600)
    results = []
    threads = [threading.Thread(target=lambda: results.append(store.get())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(r) for r in results}) == 1


def test_memo_computes_once_per_dataset(wdi):
    calls = []
    assert wdi.memo(("k", 1), lambda: calls.append(1) or 42) == 42
    assert wdi.memo(("k", 1), lambda: calls.append(1) or 43) == 42
    assert calls == [1]

