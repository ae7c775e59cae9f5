"""Property-based tests (Hypothesis) of the dataset loader, one of the two places hostile input enters.

The dataset loader (``shared.dataset.build_dataset``): files with NaN/Infinity spellings,
overflowing numbers, garbage cells, hostile codes or random bytes either load into a
dataset with only finite-or-missing values, or fail with a ``DatasetFormatError`` that
names the file; never another exception. (The validation layer, the other place, is in
tests/api/test_hostile_input.py.)
"""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from helpers import hostile_text
from shared.dataset import (COUNTRY_META, DATA_FILE, DATA_PARQUET, DATASET_META, INDICATOR_META, KNOWN_FILES,
                            MAX_ABS_VALUE, Dataset, DatasetFormatError, build_dataset)

HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                derandomize=True, database=None)


YEARS = ["2000", "2001", "2002"]
COUNTRIES = ["FJI", "JAM", "USA", "FRA"]
INDICATORS = ["wdi-A", "wdi-B", "wdi-C"]


def _csv(rows: list[list[str]]) -> bytes:
    import csv

    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


def valid_files(cells: dict[tuple[int, int, int], str] | None = None) -> dict[str, bytes]:
    cells = cells or {}
    data = [["Country Code", "Indicator Code", *YEARS]]
    for c, country in enumerate(COUNTRIES):
        for i, ind in enumerate(INDICATORS):
            data.append([country, ind, *[cells.get((c, i, y), str(1.5 * (c + 1) + i + y)) for y in range(len(YEARS))]])
    meta = [["Indicator Code", "Indicator", "Dimension", "Category", "Dataset"]] + [
        [ind, f"Indicator {ind}", "units", "Cat", "wdi"] for ind in INDICATORS]
    dsets = [["Dataset Code", "Dataset Name"], ["wdi", "World Development Indicators"]]
    cmeta = [["Country Code", "Country Name", "SIDS"]] + [[c, c.lower(), str(c in ("FJI", "JAM"))] for c in COUNTRIES]
    return {DATA_FILE: _csv(data), INDICATOR_META: _csv(meta), DATASET_META: _csv(dsets), COUNTRY_META: _csv(cmeta)}


def load_or_named_error(files: dict[str, bytes]) -> Dataset | DatasetFormatError:
    try:
        data = build_dataset(files, version="t", source="test")
    except DatasetFormatError as exc:
        assert exc.file in KNOWN_FILES, f"error names no dataset file: {exc}"
        assert str(exc).startswith(exc.file + ":"), str(exc)
        return exc
    assert isinstance(data, Dataset)
    assert data.values.shape == (len(data.years), len(data.countries), len(data.indicators))
    assert not np.isinf(data.values).any(), "an infinite value was loaded"
    assert list(data.years) == sorted(set(data.years)), f"years out of order or repeated: {data.years}"
    for codes in (data.countries, data.indicators):
        assert all(isinstance(c, str) and c.strip() == c and c for c in codes), f"blank or padded code in {list(codes)}"
    assert data.indicator_meta.index.equals(data.indicators)
    return data


NON_FINITE_SPELLINGS = ["NaN", "nan", "-nan", "inf", "-inf", "Infinity", "-Infinity", "INF", "1e400", "-1e999",
                        "1E+309"]
cell_values = st.one_of(
    st.sampled_from(NON_FINITE_SPELLINGS + ["", " ", "NA", "null", "None", "N/A", "..", "-", "1,5", "1.5.5",
                                            "0x10", "1_000", "١٢", "½", "1e-400", "-0", "+3", " 7 ", "\x00"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30).map(str),
    st.text(max_size=12),
)


@HYPO
@given(cells=st.dictionaries(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 2)), cell_values,
                             max_size=12))
@example(cells={(0, 0, 0): "Infinity", (1, 1, 1): "-inf", (2, 2, 2): "NaN", (3, 0, 1): "1e400"})
@example(cells={(0, 0, 0): "abc"})
def test_data_cells_load_as_finite_or_missing_or_fail_naming_the_file(cells):
    outcome = load_or_named_error(valid_files(cells))
    if isinstance(outcome, DatasetFormatError):
        assert outcome.file == DATA_FILE
        return
    for (c, i, y), raw in cells.items():
        got = outcome.values[y, outcome.countries.get_loc(COUNTRIES[c]), outcome.indicators.get_loc(INDICATORS[i])]
        try:
            expected = float(raw.strip())
        except ValueError:
            expected = None
        usable = expected is not None and math.isfinite(expected) and abs(expected) <= MAX_ABS_VALUE
        if usable and raw.strip().lower() not in ("nan", "-nan"):
            assert got == pytest.approx(expected, rel=1e-12, abs=0), f"{raw!r} read as {got}"
        elif expected is not None:
            assert np.isnan(got), f"non-finite or out-of-bound {raw!r} loaded as {got}"


@HYPO
@given(which=st.sampled_from([DATA_FILE, INDICATOR_META, DATASET_META, COUNTRY_META]),
       junk=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "replace")),
                      st.sampled_from([b"", b"\n", b"\xef\xbb\xbf", b"a,b\n1", b'"unterminated', b"\x00" * 50,
                                       b"Country Code,Indicator Code\n", b"Country Code,Indicator Code,2000\n"])))
def test_a_garbage_file_fails_naming_that_file(which, junk):
    files = valid_files()
    files[which] = junk
    outcome = load_or_named_error(files)
    if isinstance(outcome, DatasetFormatError):
        assert outcome.file == which, f"{which} was replaced, error names {outcome.file}: {outcome}"


@HYPO
@given(which=st.sampled_from([DATA_FILE, INDICATOR_META, DATASET_META, COUNTRY_META]),
       row=st.integers(0, 3), col=st.integers(0, 4), value=st.one_of(hostile_text, st.sampled_from(YEARS)),
       duplicate=st.booleans(), drop_column=st.booleans())
@example(which=DATA_FILE, row=0, col=3, value=" 2000", duplicate=False, drop_column=False)  # same year twice
@example(which=DATA_FILE, row=0, col=2, value="2005", duplicate=False, drop_column=False)   # years out of order
@example(which=DATA_FILE, row=1, col=0, value=" ", duplicate=False, drop_column=False)      # blank country code
@example(which=INDICATOR_META, row=1, col=0, value="\t", duplicate=False, drop_column=False)
def test_hostile_codes_and_structure_in_any_file(which, row, col, value, duplicate, drop_column):
    import csv

    files = valid_files()
    rows = list(csv.reader(io.StringIO(files[which].decode())))
    r = min(row, len(rows) - 1)
    c = min(col, len(rows[r]) - 1)
    rows[r][c] = value
    if duplicate:
        rows.append(list(rows[r]))
    if drop_column:
        for line in rows:
            del line[min(col, len(line) - 1)]
    files[which] = _csv(rows)
    outcome = load_or_named_error(files)
    if isinstance(outcome, DatasetFormatError):
        assert outcome.file == which, f"{which} was changed, error names {outcome.file}: {outcome}"


@HYPO
@given(junk=st.binary(max_size=400))
def test_garbage_parquet_fails_naming_the_parquet_file(junk):
    files = valid_files()
    files[DATA_PARQUET] = junk
    beside_the_csv = load_or_named_error(files)  # no proven copy of the CSV: the CSV is read, and the file named
    assert isinstance(beside_the_csv, Dataset) and beside_the_csv.data_file == DATA_FILE
    assert beside_the_csv.warnings[0].startswith(f"{DATA_PARQUET}: cannot be read as Parquet")
    del files[DATA_FILE]
    outcome = load_or_named_error(files)
    assert isinstance(outcome, DatasetFormatError) and outcome.file == DATA_PARQUET


def test_parquet_with_non_finite_values_loads_them_as_missing():
    import pandas as pd

    frame = pd.DataFrame({"Country Code": ["FJI", "JAM"], "Indicator Code": ["wdi-A", "wdi-A"],
                          "2000": [float("inf"), 1.0], "2001": [float("nan"), -float("inf")]})
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    files = valid_files()
    files[DATA_PARQUET] = buffer.getvalue()
    del files[DATA_FILE]
    data = load_or_named_error(files)
    assert isinstance(data, Dataset)
    assert data.year_frame(2000).at["JAM", "wdi-A"] == 1.0
    assert np.isnan(data.year_frame(2000).at["FJI", "wdi-A"])
    assert np.isnan(data.year_frame(2001).at["JAM", "wdi-A"])
