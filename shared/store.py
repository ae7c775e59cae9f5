"""Where datasets come from, and the per-instance cache that serves them.

A *source* lists the dataset's files with a version tag each (file hash or blob
ETag) and fetches them. The :class:`DatasetStore` loads once, then at most every
``refresh_seconds`` asks the source whether the tags changed and reloads only then.
A reload builds a complete new :class:`Dataset` and swaps one reference, so a
request holds either the old or the new version, never a mix. When the source is
unreachable or a new version is malformed, incomplete (its files do not match its
``manifest.json``) or, without a manifest, lost more than ``shrink_limit`` of its rows or
indicators (``DATASET_SHRINK_LIMIT``), the last good copy keeps serving and ``status()`` says
``degraded``; with no good copy at all, data endpoints get 503. A smaller loss is loaded and
reported in ``data_warnings``. ``/health`` reads ``status()`` after :meth:`DatasetStore.poke`,
which never waits for the source.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from shared.dataset import (DEFAULT_MEMO_BYTES, KNOWN_FILES, MANIFEST, Dataset, DatasetFormatError, Manifest,
                            build_dataset, check_manifest, parse_manifest)
from shared.errors import DatasetUnavailable
from shared.instance import InstanceSlot
from shared.settings import PROJECT_ROOT, Settings, get_settings, redact

log = logging.getLogger("sids.datasets")


class SourceUnreachable(RuntimeError):
    pass


class DatasetSource(Protocol):
    description: str
    sizes: dict[str, int]  # file name -> size in bytes, as of the last tags()

    def tags(self) -> dict[str, str]:
        """File name -> version tag, for the dataset files (and manifest) present."""

    def fetch(self, tags: dict[str, str]) -> dict[str, bytes | str]:
        """The files' contents (or local paths) exactly at the given tags."""


def _listed(names) -> list[str]:
    """The dataset files and manifest among names."""
    return [n for n in (*KNOWN_FILES, MANIFEST) if n in names]


def folder_description(path: Path) -> str:
    """How /health names a local folder: relative to the project, or only its name (no server paths)."""
    path = Path(path)
    try:
        return f"folder {path.resolve().relative_to(PROJECT_ROOT.resolve()).as_posix()}"
    except ValueError:
        return f"folder {path.name}"


def version_of(tags: dict[str, str]) -> str:
    digest = hashlib.sha256("\n".join(f"{k}={v}" for k, v in sorted(tags.items())).encode()).hexdigest()
    return digest[:16]


class LocalFolderSource:
    """A dataset folder on disk; a file's tag is the hash of its content (recomputed only when size or mtime change).

    The CSV beside its Parquet copy is hashed too: the copy is read only when it records this hash.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.description = folder_description(self.path)
        self.sizes: dict[str, int] = {}
        self._hashes: dict[str, tuple[tuple[int, int], str]] = {}

    def tags(self) -> dict[str, str]:
        if not self.path.is_dir():
            raise SourceUnreachable(f"{self.description} does not exist")
        tags, self.sizes = {}, {}
        for name in _listed({p.name for p in self.path.iterdir()}):
            stat = (self.path / name).stat()
            self.sizes[name] = stat.st_size
            key = (stat.st_size, stat.st_mtime_ns)
            cached = self._hashes.get(name)
            if cached is None or cached[0] != key:
                digest = hashlib.sha256((self.path / name).read_bytes()).hexdigest()[:16]
                self._hashes[name] = cached = (key, digest)
            tags[name] = cached[1]
        return tags

    def fetch(self, tags: dict[str, str]) -> dict[str, bytes | str]:
        return {name: str(self.path / name) for name in tags}


DOWNLOAD_STREAMS = 4  # parallel range reads of one blob (the SDK's chunks of 4 MiB; a small blob is one read)


class BlobSource:
    """A blob container (and optional prefix); a file's tag is its ETag.

    Reached by connection string (Azurite, development) or by account URL with
    ``DefaultAzureCredential`` (managed identity in Azure, no keys).
    """

    def __init__(self, container: str, prefix: str = "", connection_string: str | None = None,
                 account_url: str | None = None, connect_timeout: float = 3.0, read_timeout: float = 3.0,
                 retries: int = 1):
        from azure.storage.blob import BlobServiceClient, LinearRetry

        # The SDK's defaults (20 s connect, 60 s per read, retries 15 s and more apart) left a cold
        # instance blocked for a minute on a hung account. A load that fails fast and is tried again
        # (at the next request, or the next refresh) keeps /health honest and requests unblocked.
        # read_timeout bounds each socket read, not a whole download.
        retry = LinearRetry(backoff=0.5, random_jitter_range=0, retry_total=retries)
        options = dict(connection_timeout=connect_timeout, read_timeout=read_timeout, retry_policy=retry)
        self.limits = f"no answer within {read_timeout:g} s, {retries + 1} tries"
        if connection_string:
            service = BlobServiceClient.from_connection_string(connection_string, **options)
        else:
            from azure.identity import DefaultAzureCredential

            service = BlobServiceClient(account_url, credential=DefaultAzureCredential(), **options)
        self.container = service.get_container_client(container)
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.description = redact(f"{self.container.url}/{self.prefix}")
        self.sizes: dict[str, int] = {}

    def _failure(self, exc: Exception) -> str:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError

        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return f"{type(exc).__name__}, storage unreachable or not answering ({self.limits})"
        return type(exc).__name__

    def tags(self) -> dict[str, str]:
        try:
            blobs = {b.name[len(self.prefix):]: b for b in self.container.list_blobs(name_starts_with=self.prefix)}
        except Exception as exc:
            raise SourceUnreachable(f"cannot list {self.description}: {self._failure(exc)}") from None
        listed = _listed(blobs)
        self.sizes = {name: blobs[name].size for name in listed}
        # Last-Modified has one-second resolution: count a change as late as it may have been.
        modified = [blobs[n].last_modified for n in listed if blobs[n].last_modified is not None]
        self.changed_at = max(modified) + timedelta(seconds=1) if modified else None
        return {name: blobs[name].etag for name in listed}

    def fetch(self, tags: dict[str, str]) -> dict[str, bytes | str]:
        from azure.core import MatchConditions

        files = {}
        for name, etag in tags.items():
            try:
                blob = self.container.get_blob_client(self.prefix + name)
                files[name] = blob.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified,
                                                 max_concurrency=DOWNLOAD_STREAMS).readall()
            except Exception as exc:
                # Changed since it was listed (publish in progress) or unreachable: try again next time.
                raise SourceUnreachable(f"cannot download {name}: {self._failure(exc)}") from None
        return files


def source_from_settings(settings: Settings) -> DatasetSource:
    if settings.uses_blob:
        secret = settings.blob_connection_string
        return BlobSource(settings.blob_container, settings.blob_prefix,
                          connection_string=secret.get_secret_value() if secret else None,
                          account_url=settings.blob_account_url,
                          connect_timeout=settings.blob_connect_timeout, read_timeout=settings.blob_read_timeout,
                          retries=settings.blob_retries)
    return LocalFolderSource(settings.dataset_path)


UNAVAILABLE_RETRY_SECONDS = 2.0  # with no copy at all, ask a failing source again at most this often
PUBLISH_QUIET_SECONDS = 30.0     # a changed blob version is loaded once its files were untouched this long
SHRINK_LIMIT = 0.5               # default: without a manifest, a reload keeping less of the rows or indicators is refused


class DatasetStore:
    def __init__(self, source: DatasetSource, refresh_seconds: float = 300, clock=time.monotonic,
                 shrink_limit: float = SHRINK_LIMIT, memo_bytes: int = DEFAULT_MEMO_BYTES):
        self.source = source
        self.memo_bytes = memo_bytes          # each memo table of a loaded version (WORK_MEMO_BYTES)
        self.refresh_seconds = refresh_seconds
        self.shrink_limit = shrink_limit
        self._clock = clock
        self._current: Dataset | None = None
        self._tags: dict[str, str] | None = None
        self._checked_at: float | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._load_lock = threading.RLock()
        self._checking = threading.Event()
        self._attempts = 0                    # loads tried (under the lock)
        self._failed_at: float | None = None  # when the last try failed
        self._rejected: dict[str, str] | None = None  # tags of the last version refused as malformed
        self._manifest: Manifest | None = None
        self._listeners: list = []            # called with each newly loaded version (subscribe)

    # -- serving -------------------------------------------------------------
    def get(self) -> Dataset:
        """The current dataset; loads it on first use, revalidates in the background when due."""
        current = self._current
        if current is None:
            self._load_missing()
            current = self._current
            if current is None:
                # Clients get the reason without the folder path or URL (operators see it in /health).
                reason = self._last_error or "not loaded"
                if self.source.description:
                    reason = reason.replace(self.source.description, "the dataset source")
                raise DatasetUnavailable(f"Dataset unavailable: {reason}")
        else:
            self._revalidate_if_due()
        return current

    def poke(self) -> None:
        """What /health does instead of :meth:`get`: never waits for the source (a hung storage account takes
        seconds per try, longer than a probe's timeout). With no copy yet, starts a load in the background
        (unless one is under way, or the last one failed less than UNAVAILABLE_RETRY_SECONDS ago); with a
        copy, revalidates it in the background when due."""
        if self._current is not None:
            self._revalidate_if_due()
            return
        retry = min(self.refresh_seconds, UNAVAILABLE_RETRY_SECONDS)
        failed_at = self._failed_at
        if self._checking.is_set() or (failed_at is not None and self._clock() - failed_at < retry):
            return
        self._checking.set()
        threading.Thread(target=self._background, args=(self._load_missing,), name="dataset-load", daemon=True).start()

    def _revalidate_if_due(self) -> None:
        if self._due() and not self._checking.is_set():
            self._checking.set()
            threading.Thread(target=self._background, args=(self.refresh,), name="dataset-refresh", daemon=True).start()

    def _load_missing(self) -> None:
        """With no copy yet: one load at a time; requests that waited for it take its outcome.

        Without this, while the source is down every request ran its own load in turn
        behind the lock, and the instance's threads piled up behind a failing source.
        """
        seen = self._attempts
        # After a failure, one request retries; the others answer at once with the last error
        # instead of queueing behind a source that may hang until its timeouts.
        if not self._load_lock.acquire(blocking=self._failed_at is None):
            return
        try:
            if self._current is not None or self._attempts != seen:
                return  # a load finished while this request waited
            retry = min(self.refresh_seconds, UNAVAILABLE_RETRY_SECONDS)
            if self._failed_at is not None and self._clock() - self._failed_at < retry:
                return  # failed moments ago: answer now instead of asking the source once per request
            self.refresh()
        finally:
            self._load_lock.release()

    def _due(self) -> bool:
        return self._checked_at is None or self._clock() - self._checked_at >= self.refresh_seconds

    def _background(self, work) -> None:
        try:
            work()
        finally:
            self._checking.clear()

    # -- loading -------------------------------------------------------------
    def refresh(self) -> bool:
        """Check the source now; reload if its tags changed. Returns True when a new version was loaded."""
        with self._load_lock:
            self._checked_at = self._clock()
            self._attempts += 1
            try:
                tags = self.source.tags()
                if tags == self._tags and self._current is not None:
                    self._last_error = self._failed_at = None
                    return False
                if tags == self._rejected:
                    return False  # the same malformed version: its error stands
                if self._publishing(tags):
                    return False  # check again at the next refresh
                started = time.perf_counter()
                log.info("loading dataset from %s", self.source.description)
                dataset, manifest = self._load(tags)
                dataset.load_seconds = time.perf_counter() - started
            except SourceUnreachable as exc:
                self._record_error(str(exc))
                return False
            except DatasetFormatError as exc:
                self._rejected = tags
                self._record_error(str(exc))
                return False
            except Exception as exc:  # never let a load failure take the instance down
                log.exception("unexpected error loading dataset")
                self._record_error(f"unexpected {type(exc).__name__} while loading the dataset")
                return False
            for warning in dataset.warnings:
                log.warning(warning)
            self._current, self._tags, self._last_error, self._failed_at = dataset, tags, None, None
            self._manifest, self._rejected = manifest, None
            log.info("dataset %s loaded in %.2f s: %d countries, %d indicators, years %d-%d",
                     dataset.version, dataset.load_seconds, len(dataset.countries), len(dataset.indicators),
                     dataset.years[0], dataset.years[-1])
        for listener in list(self._listeners):
            threading.Thread(target=listener, args=(dataset,), name="dataset-listener", daemon=True).start()
        return True

    def subscribe(self, listener) -> None:
        """Call ``listener(dataset)`` (on its own thread) each time a new version is loaded."""
        self._listeners.append(listener)

    def _load(self, tags: dict[str, str]) -> tuple[Dataset, Manifest | None]:
        """Fetch, check against the manifest (when there is one) and parse the version at tags."""
        files = self.source.fetch(tags)
        manifest = parse_manifest(files.pop(MANIFEST)) if MANIFEST in files else None
        hashes = None
        if manifest is not None:
            present = {name: getattr(self.source, "sizes", {}).get(name) for name in tags if name != MANIFEST}
            hashes = check_manifest(manifest, present, files)
        dataset = build_dataset(files, version=version_of(tags), source=self.source.description,
                                expected_rows=manifest.expected_rows if manifest else None,
                                strict=manifest is not None, sha256=hashes)
        dataset.memo_bytes = self.memo_bytes
        current = self._current
        if current is not None:
            lost = self._losses(current, dataset, refuse=manifest is None)
            dataset.warnings = (*dataset.warnings, *lost)
        return dataset, manifest

    def _losses(self, current: Dataset, new: Dataset, refuse: bool) -> list[str]:
        """What the new version lost against the copy serving, as warnings; without a manifest vouching
        for it (``refuse``), a version that lost more than the shrink limit allows is refused (a truncated upload)."""
        lost = []
        for what, old, now in (("data rows", current.n_rows, new.n_rows),
                               ("indicators", len(current.indicators), len(new.indicators))):
            if refuse and now < old * self.shrink_limit:
                raise DatasetFormatError(new.data_file, (
                    f"the new version has {now} {what}, the copy serving {old}: more than {1 - self.shrink_limit:.0%} "
                    f"lost, so it is loaded only with a {MANIFEST} vouching for it "
                    "(infra/scripts/upload_dataset.py writes one)"))
            if now < old:
                lost.append(f"{new.data_file}: the new version has {now} {what}, {old - now} ({1 - now / old:.1%}) "
                            f"fewer than the copy it replaced (version {current.version})")
        return lost

    def _publishing(self, tags: dict[str, str]) -> bool:
        """True while a new version is still being uploaded (a file changed less than the quiet period ago).

        Files are uploaded one at a time; loading between two uploads would serve a mix of
        the old and new versions' files. With a copy in service, a changed version is loaded
        only once its files have been left alone for min(refresh period, PUBLISH_QUIET_SECONDS).
        """
        changed_at = getattr(self.source, "changed_at", None)
        quiet = min(self.refresh_seconds, PUBLISH_QUIET_SECONDS)
        if self._current is None or changed_at is None or quiet <= 0:
            return False
        age = (datetime.now(timezone.utc) - changed_at).total_seconds()
        if age >= quiet:
            return False
        log.info("dataset at %s changed %.1f s ago; loading it once unchanged for %.0f s",
                 self.source.description, max(age, 0.0), quiet)
        return True

    def _record_error(self, message: str) -> None:
        message = redact(message)
        self._last_error, self._last_error_at = message, datetime.now(timezone.utc)
        self._failed_at = self._clock()
        log.error("dataset load failed: %s", message)

    # -- reporting -----------------------------------------------------------
    def status(self) -> dict:
        current = self._current
        if current is None:
            state = "unavailable"
        else:
            state = "degraded" if self._last_error else "ok"
        manifest = self._manifest if current is not None else None
        return {
            "status": state,
            "source": self.source.description,
            "version": current.version if current else None,
            "dataset_version": manifest.dataset_version if manifest else None,
            "loaded_at": current.loaded_at.isoformat() if current else None,
            "load_seconds": round(current.load_seconds, 3) if current else None,
            "rows": current.n_rows if current else 0,
            "indicators": len(current.indicators) if current else 0,
            "countries": len(current.countries) if current else 0,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at.isoformat() if self._last_error_at else None,
            "data_warnings": list(current.warnings) if current else [],
        }


def build_store(settings: Settings) -> DatasetStore:
    """The instance's dataset store, from the settings (a misconfigured source answers its error, never raises)."""
    try:
        source = source_from_settings(settings)
    except Exception as exc:  # bad configuration must not crash the import
        source = _BrokenSource(settings, exc)
    return DatasetStore(source, settings.refresh_seconds, shrink_limit=settings.shrink_limit,
                        memo_bytes=settings.work_memo_bytes)


_store: InstanceSlot[DatasetStore] = InstanceSlot(lambda: build_store(get_settings()))
get_store = _store.get
peek_store = _store.peek  # telemetry reads the store if one was made; it never makes one


def set_store(store: DatasetStore | None) -> None:
    _store.replace(store)


def get_dataset() -> Dataset:
    return get_store().get()


class _BrokenSource:
    def __init__(self, settings: Settings, exc: Exception):
        self.description = redact(settings.blob_account_url or "blob storage (connection string)")
        self.error = f"dataset source is misconfigured: {type(exc).__name__}: {redact(str(exc))[:200]}"

    def tags(self) -> dict[str, str]:
        raise SourceUnreachable(self.error)

    def fetch(self, tags):
        raise SourceUnreachable(self.error)
