"""The in-memory dataset and how it is parsed from the platform's files.

A dataset folder (or blob prefix) holds ``indicatorData.csv`` (one row per country
and indicator, one column per year), ``indicatorMeta.csv``, ``datasetMeta.csv`` and
optionally ``countryMeta.csv``. ``indicatorData.parquet`` may stand beside the CSV
and is read instead of it (much faster for platform-size data).

The values are held as one float array ``[year, country, indicator]`` so that the
countries x indicators matrix of a year is a view, not a pivot.
"""
from __future__ import annotations

import io
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
            return pd.read_csv(source, engine="pyarrow")
        return pd.read_csv(source, dtype=str, keep_default_na=False)
    except Exception as exc:  # pyarrow/pandas parse errors have many types
        raise DatasetFormatError(file, f"cannot be parsed as CSV ({type(exc).__name__}: {str(exc)[:200]})") from None


def _read_parquet(content: bytes | str) -> pd.DataFrame:
    source = io.BytesIO(content) if isinstance(content, (bytes, bytearray)) else content
    try:
        return pd.read_parquet(source)
    except Exception as exc:
        raise DatasetFormatError(DATA_PARQUET, f"cannot be read as Parquet ({type(exc).__name__})") from None


def _require_columns(file: str, frame: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS[file] if c not in frame.columns]
    if missing:
        raise DatasetFormatError(file, f"missing column(s) {', '.join(missing)}")


def _check_unique(file: str, frame: pd.DataFrame, keys: list[str]) -> None:
    dupes = frame[frame.duplicated(keys, keep=False)]
    if len(dupes):
        example = ", ".join(str(v) for v in dupes.iloc[0][keys].tolist())
        raise DatasetFormatError(file, f"{len(dupes)} rows share a key ({' + '.join(keys)}), e.g. {example}")


def _year_columns(frame: pd.DataFrame) -> list[str]:
    years = [c for c in frame.columns if str(c).strip().isdigit() and len(str(c).strip()) == 4]
    if not years:
        raise DatasetFormatError(DATA_FILE, "no year columns (four-digit column names such as 2015)")
    # The CSV reader renames a repeated header "2015" to "2015.1"; stripping can also make two equal.
    repeated = sorted({c for c in years if years.count(c) > 1}
                      | {str(c).split(".")[0] for c in frame.columns if re.fullmatch(r"\d{4}\.\d+", str(c))})
    if repeated:
        raise DatasetFormatError(DATA_FILE, f"year column {repeated[0]} appears more than once")
    return sorted(years, key=int)  # the values array is indexed by year in ascending order


def _check_numbers(file: str, frame: pd.DataFrame, years: list[str]) -> dict[str, pd.Series]:
    """Check that the year columns hold numbers; the numeric versions of the columns that were read as text."""
    converted = {}
    for col in years:
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series.dtype):
            continue
        numeric = pd.to_numeric(series, errors="coerce")
        bad = series[numeric.isna() & series.notna() & (series.astype(str).str.strip() != "")]
        if len(bad):
            row = frame.loc[bad.index[0]]
            raise DatasetFormatError(file, f"unparseable number {str(bad.iloc[0])[:40]!r} in column {col} "
                                           f"(country {row['Country Code']}, indicator {row['Indicator Code']})")
        converted[col] = numeric
    return converted


def _year_values(series: pd.Series, keep: np.ndarray | None) -> np.ndarray:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    if keep is not None:
        values = values[keep]
    infinite = np.isinf(values)
    if infinite.any():  # Infinity is not a measurement: treat it as missing
        values = np.where(infinite, np.nan, values)
    return values


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


def build_dataset(files: Mapping[str, bytes | str], version: str = "", source: str = "") -> Dataset:
    """Parse and check the files of one dataset (bytes or paths, keyed by file name)."""
    started = time.perf_counter()
    has_data = DATA_PARQUET in files or DATA_FILE in files
    for name in REQUIRED_FILES:
        if name not in files and not (name == DATA_FILE and has_data):
            raise DatasetFormatError(name, "file is missing")
    warnings: list[str] = []

    data_name = DATA_PARQUET if DATA_PARQUET in files else DATA_FILE
    data = _read_parquet(files[DATA_PARQUET]) if data_name == DATA_PARQUET else _read_csv(DATA_FILE, files[DATA_FILE])
    data.columns = [str(c).strip() for c in data.columns]
    _require_columns(DATA_FILE, data)
    data["Country Code"] = data["Country Code"].astype(str).str.strip()
    data["Indicator Code"] = data["Indicator Code"].astype(str).str.strip()
    # Codes are factorised once; every later step works on small integer arrays.
    c_codes, c_uniques = _codes(data_name, data["Country Code"])
    i_codes, i_uniques = _codes(data_name, data["Indicator Code"])
    _check_unique_pairs(data_name, data, c_codes, len(i_uniques), i_codes)
    year_cols = _year_columns(data)
    converted = _check_numbers(data_name, data, year_cols)

    meta = _read_csv(INDICATOR_META, files[INDICATOR_META])
    _require_columns(INDICATOR_META, meta)
    meta["Indicator Code"] = meta["Indicator Code"].str.strip()
    _check_unique(INDICATOR_META, meta, ["Indicator Code"])
    meta = meta.set_index("Indicator Code")

    dsets = _read_csv(DATASET_META, files[DATASET_META])
    _require_columns(DATASET_META, dsets)
    _check_unique(DATASET_META, dsets, ["Dataset Code"])
    dsets = dsets.set_index("Dataset Code")

    known_indicator = pd.Index(i_uniques).isin(meta.index)
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
    for k, col in enumerate(year_cols):
        cube[k, ci, ii] = _year_values(converted.get(col, data[col]), keep)
    del data, converted

    if COUNTRY_META in files:
        cmeta = _read_csv(COUNTRY_META, files[COUNTRY_META])
        _require_columns(COUNTRY_META, cmeta)
        cmeta["Country Code"] = cmeta["Country Code"].str.strip()
        _check_unique(COUNTRY_META, cmeta, ["Country Code"])
        cmeta = cmeta.set_index("Country Code")
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
    )

