"""Dataset parsing and the per-instance store, on local folders."""
import json
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from shared.dataset import DEFAULT_SIDS, MANIFEST, MAX_ABS_VALUE, DatasetFormatError, build_dataset
from shared.errors import DatasetUnavailable
from shared.store import DatasetStore, LocalFolderSource

from helpers import upload_dataset, with_huge_values, write_manifest

ROOT = Path(__file__).resolve().parents[2]
WDI = ROOT / "data" / "wdi"


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


ABW_1990 = ("wdi-AG.LND.EL5M.UR.K2", "ABW", 1990)  # 8.57979393 in the CSV


def served(store: DatasetStore, at=ABW_1990) -> float:
    indicator, country, year = at
    return float(store.get().indicator_series(indicator).at[country, year])


def edit_csv_same_size(folder: Path, new: str = "9.57979393") -> None:
    path = folder / "indicatorData.csv"
    size = path.stat().st_size
    path.write_text(path.read_text().replace("8.57979393", new, 1))
    assert path.stat().st_size == size


def with_parquet_copy(folder: Path, manifest: bool) -> None:
    """The folder as the upload script leaves it: the CSV's columnar copy beside it (and its manifest, or none)."""
    assert upload_dataset.main(["--manifest-only", "--parquet", str(folder)]) == 0
    if not manifest:
        (folder / MANIFEST).unlink()


def test_the_parquet_copy_of_the_csv_is_read_instead_of_it(folder):
    with_parquet_copy(folder, manifest=False)
    store = DatasetStore(LocalFolderSource(folder))
    assert store.get().data_file == "indicatorData.parquet" and served(store) == pytest.approx(8.57979393)
    assert store.status()["data_warnings"] == []


@pytest.mark.parametrize("manifest", [False, True])
def test_a_parquet_file_made_by_hand_beside_the_csv_is_not_served(folder, manifest):
    """A Parquet file that does not record the CSV it was made from is no proven copy: the CSV is read."""
    import pandas as pd

    frame = pd.read_csv(folder / "indicatorData.csv")
    frame.loc[0, "1990"] = 12345.0
    frame.to_parquet(folder / "indicatorData.parquet")
    if manifest:  # a manifest written by other means than the upload script, listing both as they are
        from shared.dataset import make_manifest

        with pytest.raises(DatasetFormatError, match="indicatorData.parquet: is not the copy of this indicatorData.csv"):
            make_manifest(files_of(folder))
    else:
        (folder / MANIFEST).unlink()
        store = DatasetStore(LocalFolderSource(folder))
        assert served(store) == pytest.approx(8.57979393) and store.get().data_file == "indicatorData.csv"
        [warning] = store.status()["data_warnings"]
        assert warning.startswith("indicatorData.parquet records no SHA-256 of the indicatorData.csv it was made "
                                  "from: indicatorData.csv was read instead"), warning


def test_without_a_manifest_an_edited_csv_wins_over_its_old_parquet_copy(folder):
    """Issue 19 (a): with no manifest, editing the CSV changed nothing that was served."""
    with_parquet_copy(folder, manifest=False)
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    assert served(store) == pytest.approx(8.57979393)
    edit_csv_same_size(folder)
    assert store.refresh() is True
    assert served(store) == pytest.approx(9.57979393) and store.get().data_file == "indicatorData.csv"
    status = store.status()
    assert status["status"] == "ok"
    assert any(w.startswith("indicatorData.parquet was made from another indicatorData.csv")
               for w in status["data_warnings"]), status["data_warnings"]


def test_manifest_only_after_editing_the_csv_never_lists_the_old_parquet_copy(folder, capsys):
    """Issue 19 (b): the README's step after an edit wrote a manifest listing the old copy (8.5798 served)."""
    with_parquet_copy(folder, manifest=True)
    edit_csv_same_size(folder)
    assert upload_dataset.main(["--manifest-only", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "indicatorData.parquet was made from another indicatorData.csv" in printed and "rewriting it" in printed
    store = DatasetStore(LocalFolderSource(folder))
    assert served(store) == pytest.approx(9.57979393) and store.get().data_file == "indicatorData.parquet"
    assert store.status()["status"] == "ok" and store.status()["data_warnings"] == []

    edit_csv_same_size(folder, "7.57979393")
    before = (folder / MANIFEST).read_bytes()
    with pytest.raises(SystemExit, match="indicatorData.parquet was made from another indicatorData.csv"):
        upload_dataset.main(["--manifest-only", "--no-parquet", str(folder)])
    assert (folder / MANIFEST).read_bytes() == before, "refused: the manifest is left as it was"


def test_with_a_manifest_a_csv_edited_in_place_to_the_same_size_is_caught(folder):
    """Issue 19 (c): a CSV beside its Parquet copy was checked by size only."""
    with_parquet_copy(folder, manifest=True)
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    good = store.get()
    edit_csv_same_size(folder)
    assert store.refresh() is False and store.get() is good
    status = store.status()
    assert status["status"] == "degraded"
    assert status["last_error"].startswith("indicatorData.csv: content differs from manifest.json"), status


def parquet_only(folder: Path) -> dict:
    """The folder's files without the CSV: the Parquet file is the data (tests of the Parquet reader)."""
    return {name: path for name, path in files_of(folder).items() if name != "indicatorData.csv"}


def _typed_parquet(frame, path) -> None:
    """frame as Parquet with the year columns in other types than float64, and a stored index."""
    import pandas as pd

    typed = frame.copy()
    typed.index = typed.index + 100                                   # written as __index_level_0__
    typed["1990"] = typed["1990"].round().astype("Int64")            # integers with nulls
    typed["1991"] = typed["1991"].map(lambda v: "" if pd.isna(v) else repr(v))  # numbers as text
    typed["1992"] = None                                              # a column of nulls only
    typed = typed.rename(columns={"1993": " 1993 "})                  # a name with spaces
    typed.to_parquet(path)


def test_parquet_columns_of_any_type_load_as_the_csv_does(folder):
    import pandas as pd

    frame = pd.read_csv(folder / "indicatorData.csv")
    frame["1990"] = frame["1990"].round()
    frame["1992"] = np.nan
    frame.to_csv(folder / "indicatorData.csv", index=False)
    from_csv = build_dataset(files_of(folder))
    _typed_parquet(frame, folder / "indicatorData.parquet")
    from_parquet = build_dataset(parquet_only(folder))
    assert from_parquet.data_file == "indicatorData.parquet"
    assert list(from_parquet.years) == list(from_csv.years)
    assert (from_parquet.countries == from_csv.countries).all()
    assert (from_parquet.indicators == from_csv.indicators).all()
    assert np.array_equal(from_parquet.values, from_csv.values, equal_nan=True)


def test_parquet_text_that_is_no_number_names_file_row_and_codes(folder):
    import pandas as pd

    frame = pd.read_csv(folder / "indicatorData.csv")
    _typed_parquet(frame, folder / "indicatorData.parquet")
    typed = pd.read_parquet(folder / "indicatorData.parquet")
    typed.iloc[5, typed.columns.get_loc("1991")] = "n/a?"
    typed.to_parquet(folder / "indicatorData.parquet")
    with pytest.raises(DatasetFormatError) as caught:
        build_dataset(parquet_only(folder))
    assert caught.value.file == "indicatorData.parquet"
    country, indicator = frame.loc[5, "Country Code"], frame.loc[5, "Indicator Code"]
    assert f"unparseable number 'n/a?' in column 1991 (country {country}, indicator {indicator})" in str(caught.value)


def test_parquet_with_a_year_column_twice_is_refused(folder):
    import pandas as pd

    frame = pd.read_csv(folder / "indicatorData.csv")
    frame[" 1990"] = frame["1990"]
    frame.to_parquet(folder / "indicatorData.parquet")
    with pytest.raises(DatasetFormatError, match="year column 1990 appears more than once"):
        build_dataset(parquet_only(folder))


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
    write_manifest(folder)
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
    write_manifest(folder)
    now[0] = 5
    assert store.get() is old  # not due yet
    now[0] = 11
    assert store.get() is old  # due: served from the current copy while a thread revalidates
    deadline = time.time() + 10
    while store.get() is old and time.time() < deadline:
        time.sleep(0.05)
    assert store.get().indicator_series("wdi-AG.LND.EL5M.UR.K2").at["ABW", 1990] == 7.25


@pytest.mark.parametrize("with_manifest", [True, False])
def test_corrupt_update_keeps_last_good_copy_and_reports_degraded(folder, with_manifest):
    if not with_manifest:
        (folder / MANIFEST).unlink()
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
    (folder / MANIFEST).unlink()  # a developer's folder: the file itself is checked
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



# --------------------------------------------------------------------------- incomplete publishes (issue 13)
def data_lines(folder: Path) -> list[str]:
    return (folder / "indicatorData.csv").read_text().splitlines(keepends=True)


def loaded_then(folder: Path, change) -> DatasetStore:
    """A store serving folder's good copy, after change(folder) and one refresh."""
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    good = store.get()
    change(folder)
    assert store.refresh() is False
    assert store.get() is good, "the good copy must keep serving"
    assert store.status()["status"] == "degraded" and store.status()["rows"] == good.n_rows
    return store


@pytest.mark.parametrize("with_manifest", [True, False])
def test_header_only_data_never_replaces_the_good_copy(folder, with_manifest):
    if not with_manifest:
        (folder / MANIFEST).unlink()
    store = loaded_then(folder, lambda f: (f / "indicatorData.csv").write_text(data_lines(f)[0]))
    assert store.status()["last_error"].startswith("indicatorData.csv: ")
    if not with_manifest:
        assert "no data rows" in store.status()["last_error"]


def test_header_only_data_is_unavailable_on_a_cold_instance(folder):
    (folder / MANIFEST).unlink()
    (folder / "indicatorData.csv").write_text(data_lines(folder)[0])
    store = DatasetStore(LocalFolderSource(folder))
    with pytest.raises(DatasetUnavailable, match="indicatorData.csv: has no data rows"):
        store.get()


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_data_cut_at_a_line_boundary_is_refused_when_a_manifest_lists_it(folder, keep):
    def cut(f):
        lines = data_lines(f)
        (f / "indicatorData.csv").write_text("".join(lines[: int(len(lines) * keep)]))

    store = loaded_then(folder, cut)
    error = store.status()["last_error"]
    assert error.startswith("indicatorData.csv: has ") and "bytes, manifest.json lists 2828203" in error


def test_without_a_manifest_a_drastic_shrink_is_refused_until_a_manifest_vouches_for_it(folder):
    (folder / MANIFEST).unlink()

    def cut(f):
        lines = data_lines(f)
        (f / "indicatorData.csv").write_text("".join(lines[: len(lines) * 2 // 5]))

    store = loaded_then(folder, cut)
    error = store.status()["last_error"]
    assert error.startswith("indicatorData.csv: the new version has") and "more than 50% lost" in error
    assert store.refresh() is False  # the same refused version is not loaded at the next refresh either
    write_manifest(folder)  # the publisher vouches: the smaller dataset is intended
    assert store.refresh() is True
    status = store.status()
    assert status["status"] == "ok" and 0 < status["rows"] < 15289 * 0.5 and status["dataset_version"]


def test_without_a_manifest_a_small_change_still_loads(folder):
    (folder / MANIFEST).unlink()
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    store.get()
    lines = data_lines(folder)
    (folder / "indicatorData.csv").write_text("".join(lines[: len(lines) * 3 // 4]))
    assert store.refresh() is True and store.status()["status"] == "ok"
    assert store.status()["dataset_version"] is None


def _same_size_edit(f):
    path = f / "indicatorData.csv"
    path.write_text(path.read_text().replace("8.57979393", "8.57979394", 1))


def _extra_file(f):
    import pandas as pd

    pd.read_csv(f / "indicatorData.csv").to_parquet(f / "indicatorData.parquet")


def _rows_in_manifest(f):
    manifest = json.loads((f / MANIFEST).read_text())
    manifest["files"]["indicatorMeta.csv"]["rows"] -= 1
    (f / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, problem", [
    (_same_size_edit, "indicatorData.csv: content differs from manifest.json (SHA-256"),
    (lambda f: (f / "countryMeta.csv").unlink(), "countryMeta.csv: is listed in manifest.json but missing"),
    (_extra_file, "indicatorData.parquet: is not listed in manifest.json"),
    (lambda f: (f / "datasetMeta.csv").write_text("Dataset Code,Dataset Name\n"),
     "datasetMeta.csv: has 26 bytes, manifest.json lists 163"),
    (_rows_in_manifest, "indicatorMeta.csv: has 110 data rows, manifest.json lists 109"),
    (lambda f: (f / MANIFEST).write_text("{not json"), "manifest.json: is not a format-1 manifest"),
], ids=["content", "missing-file", "unlisted-file", "meta-emptied", "rows", "garbage-manifest"])
def test_files_that_do_not_match_the_manifest_are_refused_naming_file_and_difference(folder, change, problem):
    store = loaded_then(folder, change)
    assert store.status()["last_error"].startswith(problem), store.status()["last_error"]


def test_csv_beside_its_parquet_copy_is_not_read_but_a_change_to_it_is_noticed(folder):
    import pandas as pd

    pd.read_csv(folder / "indicatorData.csv").to_parquet(folder / "indicatorData.parquet")
    write_manifest(folder)

    def cut_csv(f):  # the CSV changes, its Parquet copy does not: the publish is inconsistent
        lines = data_lines(f)
        (f / "indicatorData.csv").write_text("".join(lines[: len(lines) // 2]))

    store = loaded_then(folder, cut_csv)
    assert store.status()["last_error"].startswith("indicatorData.csv: has "), store.status()["last_error"]


def test_manifest_only_with_parquet_writes_the_columnar_copy_that_then_loads_as_the_csv(folder):
    from_csv = build_dataset(files_of(folder))
    assert upload_dataset.main(["--manifest-only", "--parquet", str(folder)]) == 0
    manifest = json.loads((folder / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["countryMeta.csv", "datasetMeta.csv", "indicatorData.csv",
                                         "indicatorData.parquet", "indicatorMeta.csv"]
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=3600)
    data = store.get()
    assert store.status()["status"] == "ok" and store.status()["dataset_version"] == manifest["dataset_version"]
    assert np.array_equal(data.values, from_csv.values, equal_nan=True)
    assert data.countries.equals(from_csv.countries) and data.indicators.equals(from_csv.indicators)


def test_columnar_copy_refuses_a_bad_csv_naming_the_csv(folder):
    path = folder / "indicatorData.csv"
    path.write_text(path.read_text().replace("8.57979393", "eight", 1))
    with pytest.raises(SystemExit, match="indicatorData.csv: unparseable number 'eight'"):
        upload_dataset.publish_files(folder, parquet=True)
    assert not (folder / "indicatorData.parquet").exists()


def test_embedded_dataset_has_an_up_to_date_manifest_and_is_checked_against_it():
    committed = json.loads((WDI / MANIFEST).read_text())
    fresh = json.loads(upload_dataset.manifest_for(WDI))
    assert committed["files"] == fresh["files"] and committed["dataset_version"] == fresh["dataset_version"]
    store = DatasetStore(LocalFolderSource(WDI), refresh_seconds=3600)
    store.get()
    status = store.status()
    assert status["status"] == "ok" and status["dataset_version"] == committed["dataset_version"]


def test_upload_script_refuses_to_vouch_for_a_header_only_dataset(folder):
    (folder / "indicatorData.csv").write_text(data_lines(folder)[0])
    with pytest.raises(SystemExit, match="indicatorData.csv: has no data rows"):
        upload_dataset.manifest_for(folder)


# --------------------------------------------------------------------------- values the models cannot use
def test_huge_and_infinite_values_load_as_missing_and_are_reported(folder):
    indicator = "wdi-SP.URB.TOTL.IN.ZS"
    placed = with_huge_values(folder, indicator)
    store = DatasetStore(LocalFolderSource(folder))
    data = store.get()
    for _, year, country in placed:
        assert np.isnan(data.indicator_series(indicator).at[country, int(year)])
    assert np.nanmax(np.abs(data.values)) <= MAX_ABS_VALUE
    warnings = store.status()["data_warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("indicatorData.csv: 4 value(s) not finite or beyond")
    for row, year, country in placed:
        assert f"row {row + 1} column {year} (country {country}, indicator {indicator})" in warnings[0]
    assert store.status()["status"] == "ok"


def test_data_holding_only_unusable_values_is_refused(folder):
    (folder / MANIFEST).unlink()
    path = folder / "indicatorData.csv"
    path.write_text("Country Code,Indicator Code,2015\nFJI,wdi-SP.URB.TOTL.IN.ZS,1e300\n")
    with pytest.raises(DatasetFormatError, match="indicatorData.csv: holds no usable value"):
        build_dataset(files_of(folder))


# --------------------------------------------------------------------------- storage timeouts
def test_blob_timeouts_and_retries_come_from_settings():
    from shared.settings import Settings
    from shared.store import source_from_settings

    env = {"DATASET_BLOB_CONNECTION_STRING": "UseDevelopmentStorage=true", "DATASET_BLOB_CONNECT_TIMEOUT": "1.5",
           "DATASET_BLOB_READ_TIMEOUT": "4", "DATASET_BLOB_RETRIES": "2"}
    settings = Settings.from_env(env)
    assert (settings.blob_connect_timeout, settings.blob_read_timeout, settings.blob_retries) == (1.5, 4.0, 2)
    source = source_from_settings(settings)
    assert source.limits == "no answer within 4 s, 3 tries"
    config = source.container._config
    assert config.retry_policy.total_retries == 2
    assert Settings.from_env({}).blob_read_timeout == 3.0
    for name, bad in (("DATASET_BLOB_READ_TIMEOUT", "0"), ("DATASET_BLOB_CONNECT_TIMEOUT", "soon")):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: bad})


def test_many_unusable_values_are_counted_and_the_first_five_named(folder):
    import pandas as pd

    frame = pd.read_csv(folder / "indicatorData.csv", dtype=str, keep_default_na=False)
    rows = list(frame.index[frame["Indicator Code"] == "wdi-SP.URB.TOTL.IN.ZS"][:8])
    for k, row in enumerate(reversed(rows)):
        frame.at[row, "2015" if k % 2 else "2016"] = "-1e20"
    frame.loc[len(frame)] = ["FJI", "wdi-NOT.IN.META"] + ["1e99"] * (len(frame.columns) - 2)  # ignored row
    frame.to_csv(folder / "indicatorData.csv", index=False)
    data = build_dataset(files_of(folder))
    [warning] = [w for w in data.warnings if "not finite" in w]
    assert warning.startswith("indicatorData.csv: 8 value(s) not finite or beyond +-1e+15 treated as missing")
    named = [int(n) for n in re.findall(r"row (\d+) column", warning)]
    assert named == [r + 1 for r in rows[:5]]


# --------------------------------------------------------------------------- silent changes of meaning (issue 19)
def forced_manifest(folder: Path) -> None:
    """A manifest that matches the files as they are, written without the upload script's checks
    (an older script, or by hand): the loader's own checks must still refuse what changes the meaning."""
    import hashlib

    import pandas as pd

    files = {}
    for path in sorted(folder.iterdir()):
        if path.name == MANIFEST:
            continue
        content = path.read_bytes()
        entry = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        if path.suffix == ".csv":
            entry["rows"] = len(pd.read_csv(path, dtype=str))
        files[path.name] = entry
    (folder / MANIFEST).write_text(json.dumps({"format": 1, "dataset_version": "forced", "files": files}))


def drop_country_from_meta(folder: Path, code: str = "JAM") -> None:
    path = folder / "countryMeta.csv"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.startswith(f"{code},")))


def rename_year_columns(folder: Path, renames: dict[str, str]) -> None:
    path = folder / "indicatorData.csv"
    header, rest = path.read_text().split("\n", 1)
    columns = [renames.get(c, c) for c in header.split(",")]
    path.write_text(",".join(columns) + "\n" + rest)


def test_a_country_missing_from_country_meta_is_reported_without_a_manifest(folder):
    """Issue 19: a country missing from countryMeta.csv silently stopped being a SIDS."""
    (folder / MANIFEST).unlink()
    drop_country_from_meta(folder)
    store = DatasetStore(LocalFolderSource(folder))
    data = store.get()
    assert "JAM" in data.countries and "JAM" not in data.sids
    status = store.status()
    assert status["status"] == "ok"
    assert status["data_warnings"] == [
        "countryMeta.csv: lacks 1 of the 217 countries of indicatorData.csv (they would not count as SIDS), e.g. JAM"]


def test_a_country_missing_from_country_meta_is_refused_with_a_manifest(folder):
    drop_country_from_meta(folder)
    with pytest.raises(SystemExit, match="countryMeta.csv: lacks 1 of the 217 countries"):
        write_manifest(folder)  # the upload script does not vouch for it
    forced_manifest(folder)
    store = DatasetStore(LocalFolderSource(folder))
    with pytest.raises(DatasetUnavailable, match="countryMeta.csv: lacks 1 of the 217 countries .* e.g. JAM"):
        store.get()


def test_year_columns_that_are_no_plausible_year_are_reported_without_a_manifest(folder):
    """Issue 19: a year column renamed Y2015 disappeared, one renamed 2051 was accepted as a year."""
    (folder / MANIFEST).unlink()
    rename_year_columns(folder, {"2015": "Y2015", "2020": "2051"})
    store = DatasetStore(LocalFolderSource(folder))
    data = store.get()
    assert 2051 not in data.years and 2015 not in data.years and data.years[-1] == 2019
    next_year = time.gmtime().tm_year + 1
    assert store.status()["data_warnings"] == [
        f"indicatorData.csv: 2 column(s) that are no year from 1950 to {next_year}: 'Y2015', '2051' were ignored"]


@pytest.mark.parametrize("renames", [{"2015": "Y2015"}, {"2020": "2051"}, {"1990": "1949"}])
def test_year_columns_that_are_no_plausible_year_are_refused_with_a_manifest(folder, renames):
    rename_year_columns(folder, renames)
    [odd] = renames.values()
    with pytest.raises(SystemExit, match=f"indicatorData.csv: 1 column\\(s\\) that are no year .*'{odd}'"):
        write_manifest(folder)
    forced_manifest(folder)
    with pytest.raises(DatasetUnavailable, match=f"indicatorData.csv: 1 column\\(s\\) that are no year .*'{odd}'"):
        DatasetStore(LocalFolderSource(folder)).get()


@pytest.mark.parametrize("keep", [0.7, 0.6])
def test_without_a_manifest_a_smaller_version_loads_and_health_reports_the_rows_lost(folder, keep):
    """Issue 19: a CSV cut at a line break to 70% of its rows (or a 40% shrink) loaded as ok, unreported."""
    (folder / MANIFEST).unlink()
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    before = store.get()
    lines = data_lines(folder)
    (folder / "indicatorData.csv").write_text("".join(lines[: int(len(lines) * keep)]))
    assert store.refresh() is True
    status = store.status()
    assert status["status"] == "ok" and status["rows"] < before.n_rows
    lost = before.n_rows - status["rows"]
    assert (f"indicatorData.csv: the new version has {status['rows']} data rows, {lost} "
            f"({lost / before.n_rows:.1%}) fewer than the copy it replaced (version {before.version})"
            in status["data_warnings"]), status["data_warnings"]


def test_indicators_lost_are_reported_too(folder):
    import pandas as pd

    (folder / MANIFEST).unlink()
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0)
    store.get()
    frame = pd.read_csv(folder / "indicatorData.csv", dtype=str, keep_default_na=False)
    kept = sorted(frame["Indicator Code"].unique())[:66]  # 44 of 110 dropped: 40%
    frame[frame["Indicator Code"].isin(kept)].to_csv(folder / "indicatorData.csv", index=False)
    assert store.refresh() is True
    warnings = store.status()["data_warnings"]
    assert any(w.startswith("indicatorData.csv: the new version has 66 indicators, 44 (40.0%) fewer") for w in warnings)


def test_the_refusal_threshold_is_a_setting(folder):
    from shared.settings import Settings

    assert Settings.from_env({}).shrink_limit == 0.5
    settings = Settings.from_env({"DATASET_SHRINK_LIMIT": "0.8"})
    assert settings.shrink_limit == 0.8
    with pytest.raises(ValueError, match="DATASET_SHRINK_LIMIT"):
        Settings.from_env({"DATASET_SHRINK_LIMIT": "half"})
    (folder / MANIFEST).unlink()
    store = DatasetStore(LocalFolderSource(folder), refresh_seconds=0, shrink_limit=settings.shrink_limit)
    good = store.get()
    lines = data_lines(folder)
    (folder / "indicatorData.csv").write_text("".join(lines[: int(len(lines) * 0.7)]))
    assert store.refresh() is False and store.status()["version"] == good.version
    assert "more than 20% lost, so it is loaded only with a manifest.json" in store.status()["last_error"]


def test_the_instance_store_takes_its_bounds_from_the_settings():
    from shared.settings import Settings
    from shared.store import build_store

    store = build_store(Settings(shrink_limit=0.9, work_memo_bytes=54_321))
    assert store.shrink_limit == 0.9 and store.memo_bytes == 54_321