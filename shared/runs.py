"""Runs fanned out over an Azure Storage queue, published as versioned sets of files (the AI Mode files).

A run computes one set of files from one dataset version: :meth:`Runs.start` records the run and
enqueues one message per piece of work; each message is computed by a queue-triggered function
(:meth:`Runs.process`), which writes its files and a record of what it did; when every message is
done or reported failed, the run is finished: the work's last files (e.g. metadata), then the
manifest that makes the set current, then the copy under ``current/``. What the work is (which
messages, how one is computed, what the last files are) is a :class:`Work` the caller gives, so
that this module knows nothing of the model.

Layout in the target (``shared/publish.py``)::

    <version>/ml/...                    the set's files (<version> = <dataset version>.<run start>)
    runs/<version>/run.json             the run: dataset version, total, keys, start time
    runs/<version>/done/<key>.json      one per message done: its files, result, seconds, dequeue count
    runs/<version>/failed/<key>.json    one per message reported failed: the error, dequeue count
    runs/latest.json                    the last run started
    manifest.json                       written LAST: the version that is current
    current/...                         the current set's copy, for a fixed base URL; current/manifest.json last

Delivery is at least once: a message computed twice writes the same files and the same record. A
message fails by raising; on its last dequeue (``max_dequeue_count``) it is recorded as failed before
the host moves it to the poison queue; one that never got to record (its worker died on the last
dequeue) is found in the poison queue when the run's queue is empty.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from shared.publish import PublishTarget, create_if_missing

log = logging.getLogger("sids.runs")

MANIFEST = "manifest.json"
CURRENT = "current"
LATEST = "runs/latest.json"
CHECK_WHEN_PENDING_AT_MOST = 32   # a worker counts the records only when the queue is about this short


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


class RunQueue:
    """An Azure Storage queue and its poison queue (``<name>-poison``, where the host moves messages that
    keep failing), by connection string (``AzureWebJobsStorage``, Azurite) or queue service URI with
    ``DefaultAzureCredential``. Messages are plain text (host.json ``messageEncoding: none``)."""

    def __init__(self, name: str, connection_string: str | None = None, service_uri: str | None = None):
        from azure.storage.queue import QueueClient

        def client(queue: str):
            if connection_string:
                return QueueClient.from_connection_string(connection_string, queue)
            from azure.identity import DefaultAzureCredential

            return QueueClient(service_uri, queue, credential=DefaultAzureCredential())

        if not (connection_string or service_uri):
            raise ValueError("no queue connection: set AzureWebJobsStorage (or AzureWebJobsStorage__queueServiceUri)")
        self.name = name
        self.queue = client(name)
        self.poison = client(f"{name}-poison")
        self._created = False

    def _ensure(self) -> None:
        if not self._created:
            create_if_missing(self.queue.create_queue)
            self._created = True

    def send(self, texts: list[str], threads: int = 16) -> None:
        self._ensure()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(self.queue.send_message, texts))

    def pending(self) -> int:
        """Messages in the queue, visible or being processed (approximate, as the service counts them)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return int(self.queue.get_queue_properties().approximate_message_count or 0)
        except ResourceNotFoundError:
            return 0

    def poisoned(self) -> list[str]:
        """The texts at the head of the poison queue (peeked: they stay there for the operators)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [m.content for m in self.poison.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []


class Work(Protocol):
    """What a run computes (the AI Mode's is in blueprints/aimode.py)."""

    def compute(self, message: dict) -> tuple[dict[str, bytes], Any]:
        """One message's files (name relative to the set -> content) and a JSON-able result for :meth:`finish`."""

    def finish(self, results: Callable[[str], dict[str, Any]]) -> dict[str, bytes]:
        """The set's last files, from the results of the done messages whose key starts with a prefix."""


class UnknownRun(LookupError):
    pass


@dataclass
class Runs:
    target: PublishTarget
    queue: RunQueue | None
    clock: Callable[[], float] = time.time

    # -- starting ----------------------------------------------------------------------------------
    def start(self, dataset_version: str, messages: dict[str, dict], info: dict | None = None) -> dict:
        """Record a run of ``messages`` (key -> payload) on ``dataset_version`` and enqueue them; the run's record."""
        if self.queue is None:
            raise ValueError("no queue configured: set AzureWebJobsStorage")
        stamp = datetime.fromtimestamp(self.clock(), timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        version = f"{dataset_version}.{stamp}"
        run = {"run": version, "version": version, "dataset_version": dataset_version, "total": len(messages),
               "keys": sorted(messages), "started_at": _now(), "started": self.clock(), "info": info or {}}
        self.target.write(f"runs/{version}/run.json", _json(run))
        self.target.write(LATEST, _json({"run": version}))
        self.queue.send([json.dumps({"run": version, "key": key, "dataset_version": dataset_version, **payload})
                         for key, payload in sorted(messages.items())])
        log.info("run %s: %d messages enqueued on %s (dataset version %s)", version, len(messages), self.queue.name,
                 dataset_version)
        return run

    def start_once(self, marker: str, start: Callable[[], dict]) -> dict | None:
        """``start()`` unless a run was already started for ``marker`` (by any instance)."""
        if not self.target.create(f"runs/started/{marker}", _json({"at": _now()})):
            return None
        return start()

    # -- one message -------------------------------------------------------------------------------
    def run(self, version: str) -> dict:
        try:
            raw = self.target.read(f"runs/{version}/run.json")
        except ValueError:  # not a name the target holds ('..', '/')
            raw = None
        if raw is None:
            raise UnknownRun(f"no run {version!r} in {self.target.description}")
        return json.loads(raw)

    def process(self, text: str, work: Work, dequeue_count: int, max_dequeue_count: int,
                dataset_version: str | None = None) -> str:
        """Compute one message (idempotent). Raises when it failed, so that the host retries it or, after its
        last dequeue (when it is recorded as failed here first), moves it to the poison queue."""
        message = json.loads(text)
        version, key = message["run"], message["key"]
        run = self.run(version)
        done_name = f"runs/{version}/done/{key}.json"
        if self.target.read(done_name) is not None:
            log.info("run %s: %s was already done (delivered again)", version, key)
            return "already done"
        started = time.perf_counter()
        try:
            if dataset_version is not None and dataset_version != run["dataset_version"]:
                raise RuntimeError(f"the dataset changed during the run: this instance has version {dataset_version}, "
                                   f"the run computes {run['dataset_version']}")
            files, result = work.compute(message)
            for name, data in files.items():
                self.target.write(f"{version}/{name}", data)
        except Exception as exc:
            if dequeue_count >= max_dequeue_count:
                self._record_failure(version, key, f"{type(exc).__name__}: {exc}", dequeue_count)
                self.check(version, work)
            else:
                log.warning("run %s: %s failed on dequeue %d of %d (%s: %s); the host retries it", version, key,
                            dequeue_count, max_dequeue_count, type(exc).__name__, exc)
            raise
        seconds = time.perf_counter() - started
        self.target.write(done_name, _json({"key": key, "files": sorted(files), "result": result,
                                            "seconds": round(seconds, 3), "dequeue_count": dequeue_count,
                                            "finished_at": _now()}))
        self._log_progress(run, key, seconds)
        self.check(version, work)
        return "done"

    def _record_failure(self, version: str, key: str, error: str, dequeue_count: int | None) -> None:
        log.error("run %s: %s failed for good after %s dequeues: %s", version, key, dequeue_count, error)
        self.target.write(f"runs/{version}/failed/{key}.json",
                          _json({"key": key, "error": error[:2000], "dequeue_count": dequeue_count,
                                 "failed_at": _now()}))

    def _log_progress(self, run: dict, key: str, seconds: float) -> None:
        pending = self.queue.pending() if self.queue is not None else None
        elapsed = max(1e-9, self.clock() - run["started"])
        if pending is None:
            log.info("run %s: %s done in %.2f s", run["run"], key, seconds)
            return
        processed = max(0, run["total"] - pending)
        rate = processed / elapsed
        left = f"about {pending / rate:.0f} s left" if rate > 0 else "time left not known yet"
        log.info("run %s: %s done in %.2f s; about %d/%d processed, %.2f messages/s, %s",
                 run["run"], key, seconds, processed, run["total"], rate, left)

    # -- completion --------------------------------------------------------------------------------
    def _keys(self, version: str, kind: str) -> set[str]:
        prefix = f"runs/{version}/{kind}/"
        return {n[len(prefix):-len(".json")] for n in self.target.names(prefix) if n.endswith(".json")}

    def _poisoned(self, run: dict, missing: set[str]) -> None:
        """Messages of this run that reached the poison queue without a record (their worker died on the
        last dequeue): recorded as failed."""
        if self.queue is None or not missing:
            return
        for text in self.queue.poisoned():
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if message.get("run") == run["run"] and message.get("key") in missing:
                self._record_failure(run["run"], message["key"], "moved to the poison queue without a result "
                                     "(its last attempt ended without reporting)", None)

    def check(self, version: str, work: Work | None) -> bool:
        """Finish the run when every message is done or failed (any instance may; finishing twice writes the same).
        True when the run's set is published."""
        run = self.run(version)
        manifest = self.manifest()
        if manifest is not None and manifest.get("version") == version:
            self._sync_current(version)  # resumes a copy an earlier finisher did not complete
            return True
        pending = self.queue.pending() if self.queue is not None else 0
        if pending > CHECK_WHEN_PENDING_AT_MOST:
            return False
        done, failed = self._keys(version, "done"), self._keys(version, "failed")
        missing = set(run["keys"]) - done - failed
        if missing and pending == 0:
            self._poisoned(run, missing)
            failed = self._keys(version, "failed")
            missing -= failed
        if missing or work is None:
            return False
        self._finish(run, work, done, failed - done)
        return True

    def results(self, version: str, prefix: str) -> dict[str, Any]:
        out = {}
        for name in self.target.names(f"runs/{version}/done/{prefix}"):
            raw = self.target.read(name)
            if raw is not None:
                record = json.loads(raw)
                out[record["key"]] = record.get("result")
        return out

    def _finish(self, run: dict, work: Work, done: set[str], failed: set[str]) -> None:
        version = run["version"]
        for name, data in work.finish(lambda prefix: self.results(version, prefix)).items():
            self.target.write(f"{version}/{name}", data)
        if self._superseded(run):
            log.warning("run %s finished after a later run was published: not made current", version)
            return
        manifest = {"version": version, "dataset_version": run["dataset_version"], "base": f"{version}/",
                    "current_base": f"{CURRENT}/", "published_at": _now(), "started": run["started"],
                    "messages": run["total"],
                    "done": len(done), "failed": sorted(failed),
                    "files": len([n for n in self.target.names(f"{version}/")])}
        self.target.write(MANIFEST, _json(manifest))  # the switch: from here on this set is the current one
        log.info("run %s published: %d done, %d failed, %d files", version, len(done), len(failed), manifest["files"])
        self._sync_current(version)

    def _superseded(self, run: dict) -> bool:
        """Whether the current set comes from a run started after this one (an older run never replaces it)."""
        current = self.manifest()
        return current is not None and current.get("version") != run["version"] and \
            float(current.get("started", 0)) > float(run["started"])

    def _sync_current(self, version: str) -> None:
        """Copy the set under ``current/`` (files first, then ``current/manifest.json``) and remove what it lacks."""
        raw = self.target.read(f"{CURRENT}/{MANIFEST}")
        if raw is not None and json.loads(raw).get("version") == version:
            return
        names = self.target.names(f"{version}/")
        wanted = {f"{CURRENT}/{n[len(version) + 1:]}" for n in names}
        for name in names:
            self.target.copy(name, f"{CURRENT}/{name[len(version) + 1:]}")
        for stale in set(self.target.names(f"{CURRENT}/")) - wanted - {f"{CURRENT}/{MANIFEST}"}:
            self.target.delete(stale)
        self.target.write(f"{CURRENT}/{MANIFEST}", self.target.read(MANIFEST) or _json({"version": version}))

    # -- status ------------------------------------------------------------------------------------
    def manifest(self) -> dict | None:
        raw = self.target.read(MANIFEST)
        return None if raw is None else json.loads(raw)

    def latest(self) -> str | None:
        raw = self.target.read(LATEST)
        return None if raw is None else json.loads(raw)["run"]

    def status(self, version: str | None = None, work: Work | None = None) -> dict:
        """The current set, and the given (or latest) run: total, done, failed (with errors), rate, time left."""
        version = version or self.latest()
        out: dict[str, Any] = {"current": self.manifest(), "run": None}
        if version is None:
            return out
        if work is not None:
            self.check(version, work)  # a run whose last finisher died is finished by the next status call
            out["current"] = self.manifest()
        run = self.run(version)
        done = self._keys(version, "done")
        failures = []
        for key in sorted(self._keys(version, "failed") - done):
            raw = self.target.read(f"runs/{version}/failed/{key}.json")
            if raw is not None:
                failures.append(json.loads(raw))
        elapsed = max(1e-9, self.clock() - run["started"])
        remaining = run["total"] - len(done) - len(failures)
        rate = len(done) / elapsed
        published = (out["current"] or {}).get("version") == version
        state = "published" if published else ("running" if remaining else (
            "superseded" if self._superseded(run) else "finishing"))
        out["run"] = {
            "run": version, "dataset_version": run["dataset_version"], "started_at": run["started_at"],
            "state": state,
            "total": run["total"], "done": len(done), "failed": failures, "remaining": remaining,
            "pending_in_queue": self.queue.pending() if self.queue is not None else None,
            "elapsed_seconds": round(elapsed, 1), "rate_per_second": round(rate, 4),
            "seconds_left": round(remaining / rate, 1) if rate > 0 and remaining else (0.0 if not remaining else None),
            "info": run.get("info", {}),
        }
        return out


# -- the host's queue rules (host.json extensions.queues) -------------------------------------------
@dataclass(frozen=True)
class QueueOptions:
    """host.json ``extensions.queues`` with the host's defaults (Storage Queues extension 5.x)."""

    batch_size: int = 16                 # messages fetched at once per queue function (1-32)
    new_batch_threshold: int = 8         # fetch again when this few are still running (default batchSize / 2)
    max_dequeue_count: int = 5           # after this many failed tries: to <queue>-poison
    visibility_timeout: float = 0.0      # seconds a failed message stays invisible before its retry
    max_polling_interval: float = 60.0   # seconds: the longest wait between polls of an empty queue
    message_encoding: str = "base64"     # or "none"


def _seconds(value: Any) -> float:
    """A host.json time span: "hh:mm:ss[.fff]" (or "d.hh:mm:ss"), or a number of milliseconds."""
    if isinstance(value, (int, float)):
        return float(value) / 1000
    text = str(value).strip()
    days = 0
    if text.count(":") == 2 and "." in text.split(":")[0]:
        d, text = text.split(".", 1)
        days = int(d)
    h, m, s = text.split(":")
    return days * 86400 + int(h) * 3600 + int(m) * 60 + float(s)


def queue_options(host_json: dict) -> QueueOptions:
    raw = (host_json.get("extensions") or {}).get("queues") or {}
    batch = int(raw.get("batchSize", 16))
    if not 1 <= batch <= 32:
        raise ValueError(f"host.json extensions.queues.batchSize must be 1-32, got {batch}")
    return QueueOptions(
        batch_size=batch,
        new_batch_threshold=int(raw.get("newBatchThreshold", batch // 2)),
        max_dequeue_count=max(1, int(raw.get("maxDequeueCount", 5))),
        visibility_timeout=_seconds(raw.get("visibilityTimeout", "00:00:00")),
        max_polling_interval=_seconds(raw.get("maxPollingInterval", "00:01:00")),
        message_encoding=str(raw.get("messageEncoding", "base64")).lower(),
    )
