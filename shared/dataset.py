"""The in-memory dataset and how it is parsed from the platform's files.

A dataset folder (or blob prefix) holds ``indicatorData.csv`` (one row per country
and indicator, one column per year), ``indicatorMeta.csv``, ``datasetMeta.csv`` and
optionally ``countryMeta.csv``. ``indicatorData.parquet`` may stand beside the CSV: it is
a cache of the CSV (much faster to read at platform size), read instead of it only when it
records the SHA-256 of exactly this CSV (``columnar_copy`` writes it); otherwise the CSV is
read and a warning says why. A ``manifest.json``, written last by the upload script, lists
every file's size, SHA-256 and CSV row count: it tells a complete publish from a partial or
truncated one.

What would silently change the data's meaning (a country of the data missing from
``countryMeta.csv``, so it stops being a SIDS; a year column that is no plausible year, such
as ``Y2015`` or ``2051``) is refused when a manifest vouches for the files (``strict``) and
reported as a warning otherwise.

The values are held as one float array ``[year, country, indicator]`` so that the
countries x indicators matrix of a year is a view, not a pivot.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

DATA_FILE = "indicatorData.csv"
DATA_PARQUET = "indicatorData.parquet"
INDICATOR_META = "indicatorMeta.csv"
DATASET_META = "datasetMeta.csv"
COUNTRY_META = "countryMeta.csv"
REQUIRED_FILES = (DATA_FILE, INDICATOR_META, DATASET_META)
KNOWN_FILES = (DATA_FILE, DATA_PARQUET, INDICATOR_META, DATASET_META, COUNTRY_META)
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
# Values the models cannot handle (float32 overflow in IterativeImputer, squared errors): beyond this
# magnitude a value is treated as missing and reported. Real indicators stay far below (world GDP ~1e14 US$).
MAX_ABS_VALUE = 1e15
DEFAULT_MEMO_BYTES = 128 * 1024 * 1024   # WORK_MEMO_BYTES' default
# The Parquet copy's schema metadata: the SHA-256 of the CSV it was made from (its proof of being that CSV's copy).
PARQUET_SOURCE_KEY = b"sids.source_csv_sha256"
FIRST_YEAR = 1950  # year columns run from here to next calendar year

REQUIRED_COLUMNS = {
    DATA_FILE: ("Country Code", "Indicator Code"),
    INDICATOR_META: ("Indicator Code", "Indicator", "Dimension", "Category", "Dataset"),
    DATASET_META: ("Dataset Code", "Dataset Name"),
    COUNTRY_META: ("Country Code", "SIDS"),
}

# UN-OHRLLS list of Small Island Developing States (UN members and associate members),
# used when a dataset ships no countryMeta.csv with a SIDS column.
DEFAULT_SIDS = frozenset("""
ATG BHS BHR BRB BLZ CPV COM CUB DMA DOM FJI GRD GNB GUY HTI JAM KIR MDV MHL FSM MUS NRU PLW PNG
WSM STP SYC SGP SLB KNA LCA VCT SUR TLS TON TTO TUV VUT AIA ABW BMU VGB CYM MNP COK CUW PYF GLP
GUM MTQ MSR NCL NIU PRI ASM SXM TCA VIR
""".split())


class DatasetFormatError(ValueError):
    """A dataset file is malformed; the message names the file and the problem."""

    def __init__(self, file: str, problem: str):
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


@dataclass(eq=False)
class Dataset:
    """One immutable version of the data. Derived, request-independent results are memoised on it."""

    values: np.ndarray                 # float64 [year, country, indicator], NaN = missing
    years: tuple[int, ...]
    countries: pd.Index                # ISO3 codes
    indicators: pd.Index               # indicator codes
    indicator_meta: pd.DataFrame       # indexed by indicator code, aligned with ``indicators``
    dataset_meta: pd.DataFrame         # indexed by dataset code
    country_meta: pd.DataFrame         # indexed by country code, aligned with ``countries``
    sids: frozenset[str]
    version: str = ""
    source: str = ""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    load_seconds: float = 0.0
    warnings: tuple[str, ...] = ()
    data_file: str = DATA_FILE         # the file the values were read from (the CSV, or its Parquet copy)
    memo_bytes: int = DEFAULT_MEMO_BYTES  # each memo table of request-dependent work (shared/cache.memo_table)
    _memo: dict = field(default_factory=dict, repr=False)
    _memo_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self.values.setflags(write=False)
        self._year_pos = {y: i for i, y in enumerate(self.years)}
        self.sids_mask = self.countries.isin(sorted(self.sids))

    @property
    def n_rows(self) -> int:
        """Country-indicator pairs with at least one value (counted once: the values never change)."""
        return self.memo(("dataset", "n_rows"), lambda: int(np.count_nonzero(~np.all(np.isnan(self.values), axis=0))))

    def has_year(self, year: int) -> bool:
        return year in self._year_pos

    def year_matrix(self, year: int) -> np.ndarray:
        """countries x indicators for one year (read-only view)."""
        return self.values[self._year_pos[year]]

    def year_frame(self, year: int) -> pd.DataFrame:
        return pd.DataFrame(self.year_matrix(year), index=self.countries, columns=self.indicators, copy=False)

    def indicator_series(self, code: str) -> pd.DataFrame:
        """countries x years for one indicator."""
        j = self.indicators.get_loc(code)
        return pd.DataFrame(self.values[:, :, j].T, index=self.countries, columns=list(self.years))

    def indicator_name(self, code: str) -> str:
        return str(self.indicator_meta.at[code, "Indicator"])

    def country_name(self, code: str) -> str:
        return str(self.country_meta.at[code, "Country Name"])

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """Compute once per dataset version; concurrent callers of the same key wait for one computation."""
        with self._memo_lock:
            slot = self._memo.get(key)
            if slot is None:
                slot = self._memo[key] = [threading.Lock(), None, False]
        with slot[0]:
            if not slot[2]:
                slot[1] = compute()
                slot[2] = True
            return slot[1]


def _read_csv(file: str, content: bytes | str) -> pd.DataFrame:
    source = io.BytesIO(content) if isinstance(content, (bytes, bytearray)) else content
    try:
        if file == DATA_FILE:
            return pd.read_csv(source, engine="pyarrow", dtype_backend="pyarrow")
        return pd.read_csv(source, dtype=str, keep_default_na=False)
    except Exception as exc:  # pyarrow/pandas parse errors have many types
        raise DatasetFormatError(file, f"cannot be parsed as CSV ({type(exc).__name__}: {str(exc)[:200]})") from None


@dataclass
class _DataTable:
    """The data file: its code columns as a frame, and the other columns read one at a time.

    From Parquet only the two code columns are read up front; each year column is read when the
    values array is filled, so the whole table is never held twice (as Arrow and as pandas).
    """

    frame: pd.DataFrame                  # Country Code, Indicator Code (whichever are present); RangeIndex
    columns: list[str]                   # every column name, stripped
    column: Callable[[str], pd.Series]   # one column by stripped name, aligned with frame
    numeric: frozenset[str]              # columns whose type is numeric (no text to check)


def _frame_table(frame: pd.DataFrame) -> _DataTable:
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c).strip() for c in frame.columns]
    numeric = frozenset(c for c, dtype in zip(frame.columns, frame.dtypes) if pd.api.types.is_numeric_dtype(dtype))
    return _DataTable(frame, list(frame.columns), frame.__getitem__, numeric)


def _read_parquet(content: bytes | str) -> _DataTable:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pa.BufferReader(content) if isinstance(content, (bytes, bytearray)) else content
    try:
        handle = pq.ParquetFile(source)
        schema = handle.schema_arrow
        names = [name for name in schema.names if not str(name).startswith("__index_level_")]
        raw = {str(name).strip(): name for name in names}  # two names equal once stripped fail in _year_columns
        codes = [raw[c] for c in REQUIRED_COLUMNS[DATA_FILE] if c in raw]
        frame = handle.read(columns=codes).to_pandas() if codes else pd.DataFrame(
            index=pd.RangeIndex(handle.metadata.num_rows))
    except Exception as exc:
        raise DatasetFormatError(DATA_PARQUET, f"cannot be read as Parquet ({type(exc).__name__})") from None
    frame = frame.reset_index(drop=True)  # aligned with the columns read later (a stored index is not data)
    frame.columns = [str(c).strip() for c in frame.columns]

    def is_number(t) -> bool:
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_null(t)

    def column(name: str) -> pd.Series:
        try:
            values = handle.read(columns=[raw[name]]).column(0)
        except Exception as exc:
            raise DatasetFormatError(DATA_PARQUET, f"cannot read column {name} ({type(exc).__name__})") from None
        if is_number(values.type) and not pa.types.is_decimal(values.type):
            return pd.Series(values.to_numpy(), copy=False)  # float64 (or int without nulls); nulls are NaN
        return values.to_pandas()

    numeric = frozenset(c for c, name in raw.items() if is_number(schema.field(name).type))
    return _DataTable(frame, [str(name).strip() for name in names], column, numeric)


def _require_columns(file: str, frame: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS[file] if c not in frame.columns]
    if missing:
        raise DatasetFormatError(file, f"missing column(s) {', '.join(missing)}")


def _check_unique(file: str, frame: pd.DataFrame, keys: list[str]) -> None:
    dupes = frame[frame.duplicated(keys, keep=False)]
    if len(dupes):
        example = ", ".join(str(v) for v in dupes.iloc[0][keys].tolist())
        raise DatasetFormatError(file, f"{len(dupes)} rows share a key ({' + '.join(keys)}), e.g. {example}")


def _year_columns(columns: list[str], strict: bool, warnings: list[str], file: str = DATA_FILE) -> list[str]:
    """The year columns: every column but the two codes must be a plausible year (FIRST_YEAR .. next year).

    Another column (``Y2015``, ``2051``) is refused when ``strict``, else ignored with a warning."""
    last = datetime.now(timezone.utc).year + 1
    others = [str(c).strip() for c in columns if str(c).strip() not in REQUIRED_COLUMNS[DATA_FILE]]
    # The CSV reader renames a repeated header "2015" to "2015.1"; stripping can also make two equal.
    repeated = sorted({c for c in others if others.count(c) > 1}
                      | {c.split(".")[0] for c in others if re.fullmatch(r"\d{4}\.\d+", c)})
    if repeated:
        raise DatasetFormatError(DATA_FILE, f"year column {repeated[0]} appears more than once")
    years = [c for c in others if c.isdigit() and len(c) == 4 and FIRST_YEAR <= int(c) <= last]
    odd = [c for c in others if c not in years]
    if odd:
        problem = (f"{len(odd)} column(s) that are no year from {FIRST_YEAR} to {last}: "
                   f"{', '.join(repr(c[:40]) for c in odd[:5])}")
        if strict:
            raise DatasetFormatError(file, problem)
        warnings.append(f"{file}: {problem} were ignored")
    if not years:
        raise DatasetFormatError(DATA_FILE, f"no year columns (four-digit column names such as 2015, "
                                            f"from {FIRST_YEAR} to {last})")
    return sorted(years, key=int)  # the values array is indexed by year in ascending order


def _check_numbers(file: str, table: _DataTable, years: list[str]) -> dict[str, pd.Series]:
    """Check that the year columns hold numbers; the numeric versions of the columns that were read as text."""
    converted = {}
    frame = table.frame
    for col in years:
        if col in table.numeric:
            continue
        series = table.column(col)
        if pd.api.types.is_numeric_dtype(series.dtype):
            continue
        if isinstance(series.dtype, pd.ArrowDtype):
            # Arrow-backed text: to_numeric would turn "eight" into NaN, which Arrow does not count as missing.
            series = series.astype(object)
        numeric = pd.to_numeric(series, errors="coerce")
        bad = series[numeric.isna() & series.notna() & (series.astype(str).str.strip() != "")]
        if len(bad):
            row = frame.loc[bad.index[0]]
            raise DatasetFormatError(file, f"unparseable number {str(bad.iloc[0])[:40]!r} in column {col} "
                                           f"(country {row['Country Code']}, indicator {row['Indicator Code']})")
        converted[col] = numeric
    return converted


def _year_values(series: pd.Series, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The column's values (rows in keep) with infinite and out-of-bound ones made missing; and the rows of those."""
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        unusable = np.isinf(values) | (np.abs(values) > MAX_ABS_VALUE)
    rows = np.flatnonzero(unusable if keep is None else unusable & keep)
    if len(rows):  # not a measurement the models can use: treat it as missing
        values = np.where(unusable, np.nan, values)
    if keep is not None:
        values = values[keep]
    return values, rows


SHOWN_UNUSABLE = 5  # values named in the warning


def _unusable_warning(file: str, data: pd.DataFrame, count: int, found: list[tuple[int, str, float]]) -> str:
    examples = []
    for row, col, value in sorted(found)[:SHOWN_UNUSABLE]:
        examples.append(f"row {row + 1} column {col} (country {data.at[row, 'Country Code']}, "
                        f"indicator {data.at[row, 'Indicator Code']}): {value:g}")
    return (f"{file}: {count} value(s) not finite or beyond +-{MAX_ABS_VALUE:g} treated as missing, "
            f"e.g. {'; '.join(examples)}")


def _codes(file: str, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the distinct values (as a numpy object array) of a column of codes."""
    codes, uniques = pd.factorize(series.mask(series == ""))  # a blank code counts as empty
    if len(codes) and codes.min() < 0:
        raise DatasetFormatError(file, f"empty {series.name} in data row {int(np.argmin(codes)) + 1}")
    return codes, np.asarray(uniques, dtype=object)


def _check_unique_pairs(file: str, frame: pd.DataFrame, c_codes: np.ndarray, n_i: int, i_codes: np.ndarray) -> None:
    key = c_codes.astype(np.int64) * max(n_i, 1) + i_codes
    n_keys = (int(c_codes.max()) + 1) * max(n_i, 1) if len(key) else 0
    if n_keys <= 64 * 1024 * 1024:
        repeated = len(key) and np.bincount(key, minlength=n_keys).max() > 1
    else:
        ordered = np.sort(key)
        repeated = bool(np.any(ordered[1:] == ordered[:-1]))
    if repeated:
        _check_unique(file, frame, ["Country Code", "Indicator Code"])  # finds them and names one


def _parse_bool(value: str) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes", "y", "t"}


def _check_rows(file: str, frame: pd.DataFrame, expected_rows: Mapping[str, int] | None) -> None:
    if expected_rows is not None and file in expected_rows and len(frame) != expected_rows[file]:
        raise DatasetFormatError(file, f"has {len(frame)} data rows, {MANIFEST} lists {expected_rows[file]}")
    if file in (DATA_FILE, DATA_PARQUET) and len(frame) == 0:
        raise DatasetFormatError(file, "has no data rows")


def parquet_source(content: bytes | str) -> str | None:
    """The SHA-256 of the CSV a Parquet copy was made from, as recorded in it (None: not recorded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        source = pa.BufferReader(content) if isinstance(content, (bytes, bytearray)) else content
        metadata = pq.read_schema(source).metadata or {}
        return metadata[PARQUET_SOURCE_KEY].decode("ascii") if PARQUET_SOURCE_KEY in metadata else None
    except Exception as exc:
        raise DatasetFormatError(DATA_PARQUET, f"cannot be read as Parquet ({type(exc).__name__})") from None


def stale_parquet(files: Mapping[str, bytes | str], csv_sha256: str | None = None) -> str | None:
    """Why the Parquet file beside the CSV is not the copy of that CSV; None when it is (or one of them is absent).

    ``csv_sha256``: the CSV's hash when already known (saves hashing it again)."""
    if DATA_PARQUET not in files or DATA_FILE not in files:
        return None
    try:
        recorded = parquet_source(files[DATA_PARQUET])
    except DatasetFormatError as exc:
        return str(exc)
    if recorded is None:
        return f"{DATA_PARQUET} records no SHA-256 of the {DATA_FILE} it was made from"
    actual = csv_sha256 or _sha256_and_size(files[DATA_FILE])[0]
    if recorded != actual:
        return (f"{DATA_PARQUET} was made from another {DATA_FILE} (SHA-256 {recorded[:12]}..., "
                f"this one {actual[:12]}...)")
    return None


def build_dataset(files: Mapping[str, bytes | str], version: str = "", source: str = "",
                  expected_rows: Mapping[str, int] | None = None, strict: bool = False,
                  sha256: Mapping[str, str] | None = None) -> Dataset:
    """Parse and check the files of one dataset (bytes or paths, keyed by file name).

    ``expected_rows``: data rows per CSV as listed in the manifest; a file that parses to another count fails.
    ``strict`` (a manifest vouches for the files): what would change the data's meaning silently (a country
    missing from countryMeta.csv, a column that is no plausible year) is refused instead of reported.
    ``sha256``: the files' hashes when already computed. A Parquet file beside the CSV is read only when
    it is proven to be that CSV's copy (:func:`stale_parquet`); otherwise the CSV is, with a warning.
    """
    started = time.perf_counter()
    has_data = DATA_PARQUET in files or DATA_FILE in files
    for name in REQUIRED_FILES:
        if name not in files and not (name == DATA_FILE and has_data):
            raise DatasetFormatError(name, "file is missing")
    warnings: list[str] = []

    data_name = DATA_PARQUET if DATA_PARQUET in files else DATA_FILE
    stale = stale_parquet(files, (sha256 or {}).get(DATA_FILE))
    if stale:
        data_name = DATA_FILE
        warnings.append(f"{stale}: {DATA_FILE} was read instead (rewrite the copy with "
                        "infra/scripts/upload_dataset.py --manifest-only --parquet FOLDER)")
    if data_name == DATA_PARQUET:
        table = _read_parquet(files[DATA_PARQUET])
    else:
        table = _frame_table(_read_csv(DATA_FILE, files[DATA_FILE]))
    data = table.frame
    _check_rows(data_name, data, expected_rows)
    _require_columns(DATA_FILE, data)
    data["Country Code"] = data["Country Code"].astype(str).str.strip()
    data["Indicator Code"] = data["Indicator Code"].astype(str).str.strip()
    # Codes are factorised once; every later step works on small integer arrays.
    c_codes, c_uniques = _codes(data_name, data["Country Code"])
    i_codes, i_uniques = _codes(data_name, data["Indicator Code"])
    _check_unique_pairs(data_name, data, c_codes, len(i_uniques), i_codes)
    year_cols = _year_columns(table.columns, strict, warnings, data_name)
    converted = _check_numbers(data_name, table, year_cols)

    meta = _read_csv(INDICATOR_META, files[INDICATOR_META])
    _check_rows(INDICATOR_META, meta, expected_rows)
    _require_columns(INDICATOR_META, meta)
    meta["Indicator Code"] = meta["Indicator Code"].str.strip()
    _check_unique(INDICATOR_META, meta, ["Indicator Code"])
    meta = meta.set_index("Indicator Code")

    dsets = _read_csv(DATASET_META, files[DATASET_META])
    _check_rows(DATASET_META, dsets, expected_rows)
    _require_columns(DATASET_META, dsets)
    _check_unique(DATASET_META, dsets, ["Dataset Code"])
    dsets = dsets.set_index("Dataset Code")

    known_indicator = pd.Index(i_uniques).isin(meta.index)
    if not known_indicator.any():
        raise DatasetFormatError(INDICATOR_META, f"lists none of the {len(i_uniques)} indicator codes of {data_name}, "
                                                 f"e.g. {i_uniques[0]}")
    keep = None
    if not known_indicator.all():
        unknown = sorted(i_uniques[~known_indicator])
        warnings.append(f"{DATA_FILE}: {len(unknown)} indicator code(s) not in {INDICATOR_META} were ignored, "
                        f"e.g. {unknown[0]}")
        keep = known_indicator[i_codes]
        c_codes, i_codes = c_codes[keep], i_codes[keep]

    seen_country = np.zeros(len(c_uniques), dtype=bool)
    seen_country[c_codes] = True
    countries = pd.Index(sorted(c_uniques[seen_country]), name="Country Code")
    indicators = pd.Index(sorted(i_uniques[known_indicator]), name="Indicator Code")
    years = tuple(int(c) for c in year_cols)
    cube = np.full((len(years), len(countries), len(indicators)), np.nan)
    ci = countries.get_indexer(c_uniques)[c_codes]
    ii = indicators.get_indexer(i_uniques)[i_codes]
    unusable, first_unusable = 0, []  # the first rows of each column are enough to name the first overall
    for k, col in enumerate(year_cols):
        column = converted[col] if col in converted else table.column(col)
        cube[k, ci, ii], rows = _year_values(column, keep)
        unusable += len(rows)
        first_unusable.extend((int(r), col, float(column.iloc[r])) for r in rows[:SHOWN_UNUSABLE])
    if unusable:
        warnings.append(_unusable_warning(data_name, data, unusable, first_unusable))
    del data, converted, table
    if np.isnan(cube).all():
        raise DatasetFormatError(data_name, "holds no usable value")

    if COUNTRY_META in files:
        cmeta = _read_csv(COUNTRY_META, files[COUNTRY_META])
        _check_rows(COUNTRY_META, cmeta, expected_rows)
        _require_columns(COUNTRY_META, cmeta)
        cmeta["Country Code"] = cmeta["Country Code"].str.strip()
        _check_unique(COUNTRY_META, cmeta, ["Country Code"])
        cmeta = cmeta.set_index("Country Code")
        unlisted = countries.difference(cmeta.index)
        if len(unlisted):
            problem = (f"lacks {len(unlisted)} of the {len(countries)} countries of {data_name} "
                       f"(they would not count as SIDS), e.g. {', '.join(unlisted[:5])}")
            if strict:
                raise DatasetFormatError(COUNTRY_META, problem)
            warnings.append(f"{COUNTRY_META}: {problem}")
        sids = frozenset(c for c, flag in cmeta["SIDS"].items() if _parse_bool(flag))
    else:
        cmeta = pd.DataFrame(index=pd.Index([], name="Country Code"))
        sids = DEFAULT_SIDS
    cmeta = cmeta.reindex(countries)
    if "Country Name" not in cmeta.columns:
        cmeta["Country Name"] = countries
    cmeta["Country Name"] = cmeta["Country Name"].fillna(pd.Series(countries, index=countries))

    return Dataset(
        values=cube, years=years, countries=countries, indicators=indicators,
        indicator_meta=meta.reindex(indicators), dataset_meta=dsets, country_meta=cmeta, sids=sids,
        version=version, source=source, load_seconds=time.perf_counter() - started, warnings=tuple(warnings),
        data_file=data_name,
    )



def as_copy_of(table, csv: bytes | str):
    """The Arrow table with the proof, in its schema metadata, that it is the copy of this CSV (its SHA-256)."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}),
                                          PARQUET_SOURCE_KEY: _sha256_and_size(csv)[0].encode()})


def columnar_copy(files: Mapping[str, bytes | str]) -> bytes:
    """``indicatorData.parquet`` for a dataset's ``indicatorData.csv``: the same table, which loads faster.

    Written once per data version by the upload script, so that no instance parses the CSV
    (README, Performance: start of an instance from each). It records the CSV's SHA-256 in its
    schema metadata (``PARQUET_SOURCE_KEY``): the loader reads it instead of the CSV only beside
    that very CSV. Checked before it is returned: the dataset loaded from the copy must be the one
    loaded from the CSV, else DatasetFormatError. The CSV is checked first, so its errors name the CSV.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_only = {name: content for name, content in files.items() if name != DATA_PARQUET}
    from_csv = build_dataset(csv_only)
    table = pa.Table.from_pandas(_read_csv(DATA_FILE, files[DATA_FILE]), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(as_copy_of(table, files[DATA_FILE]), buffer)
    copy = buffer.getvalue()
    without_csv = {name: content for name, content in csv_only.items() if name != DATA_FILE}
    from_copy = build_dataset({**without_csv, DATA_PARQUET: copy})
    same = (from_copy.years == from_csv.years and from_copy.countries.equals(from_csv.countries)
            and from_copy.indicators.equals(from_csv.indicators)
            and np.array_equal(from_copy.values, from_csv.values, equal_nan=True))
    if not same:
        raise DatasetFormatError(DATA_PARQUET, f"the Parquet copy of {DATA_FILE} does not load to the same data")
    return copy


# --------------------------------------------------------------------------- manifest
def _sha256_and_size(content: bytes | str) -> tuple[str, int]:
    if isinstance(content, (bytes, bytearray)):
        return hashlib.sha256(content).hexdigest(), len(content)
    digest, size = hashlib.sha256(), 0
    with open(content, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def make_manifest(files: Mapping[str, bytes | str], dataset_version: str | None = None,
                  created_at: datetime | None = None) -> dict:
    """The manifest of a complete dataset: per file its size, SHA-256 and (CSV) data rows.

    Refuses files the loader would refuse with a manifest (the data must parse and have rows, every country
    be in countryMeta.csv, every year column a plausible year), and a Parquet file that is not the copy of
    the CSV listed with it, so a manifest never vouches for them.
    """
    listed = {}
    for name in sorted(files):
        if name not in KNOWN_FILES:
            continue
        sha256, size = _sha256_and_size(files[name])
        entry: dict[str, Any] = {"bytes": size, "sha256": sha256}
        if name.endswith(".csv"):
            entry["rows"] = len(_read_csv(name, files[name]))
        listed[name] = entry
    stale = stale_parquet(files, listed.get(DATA_FILE, {}).get("sha256"))
    if stale:
        raise DatasetFormatError(DATA_PARQUET, f"is not the copy of this {DATA_FILE}: {stale}")
    build_dataset({n: files[n] for n in listed}, strict=True)  # raises DatasetFormatError naming the file
    if dataset_version is None:
        combined = "\n".join(f"{n}={e['sha256']}" for n, e in listed.items())
        dataset_version = hashlib.sha256(combined.encode()).hexdigest()[:16]
    created = (created_at or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    return {"format": MANIFEST_FORMAT, "dataset_version": dataset_version, "created_at": created, "files": listed}


@dataclass(frozen=True)
class Manifest:
    dataset_version: str
    created_at: str
    files: dict[str, dict]

    @property
    def expected_rows(self) -> dict[str, int]:
        return {n: e["rows"] for n, e in self.files.items() if "rows" in e}


def parse_manifest(content: bytes | str) -> Manifest:
    if not isinstance(content, (bytes, bytearray)):
        with open(content, "rb") as handle:
            content = handle.read()
    try:
        raw = json.loads(content)
        files = raw["files"]
        ok = raw.get("format") == MANIFEST_FORMAT and isinstance(files, dict) and all(
            isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
            and isinstance(e.get("rows", 0), int) for e in files.values())
    except (ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise DatasetFormatError(MANIFEST, f"is not a format-{MANIFEST_FORMAT} manifest "
                                           "(files: name -> bytes, sha256, rows)")
    return Manifest(str(raw.get("dataset_version", "")), str(raw.get("created_at", "")), files)


def check_manifest(manifest: Manifest, present: Mapping[str, int | None],
                   contents: Mapping[str, bytes | str]) -> dict[str, str]:
    """Check the files against the manifest; raises DatasetFormatError naming the first file that differs.

    ``present``: every dataset file there, with its size when known; ``contents``: the files that will be read
    (their SHA-256 is checked; the others' size only). Returns the SHA-256 of each of ``contents``.
    """
    hashes = {}
    for name in sorted(present):
        if name not in manifest.files:
            raise DatasetFormatError(name, f"is not listed in {MANIFEST} (a publish in progress, or a stray file)")
    for name, entry in sorted(manifest.files.items()):
        if name not in present:
            raise DatasetFormatError(name, f"is listed in {MANIFEST} but missing")
        size = present[name]
        if name in contents:
            sha256, size = _sha256_and_size(contents[name])
            hashes[name] = sha256
        if size is not None and size != entry["bytes"]:
            raise DatasetFormatError(name, f"has {size} bytes, {MANIFEST} lists {entry['bytes']}")
        if name in contents and sha256 != entry["sha256"]:
            raise DatasetFormatError(name, f"content differs from {MANIFEST} (SHA-256 {sha256[:12]}..., "
                                           f"listed {entry['sha256'][:12]}...)")
    return hashes
