"""Every setting the service reads from its environment, in one place.

Locally the values come from the shell or from ``local.settings.json`` (which
``func start`` and the local host both load); in Azure they are app settings.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATASET = PROJECT_ROOT / "data" / "wdi"

DEFAULT_CORS_ORIGINS = (
    "https://lenseg.github.io",
    "https://sids-dashboard.github.io",
    "https://data.undp.org",
    "http://localhost",
    "http://localhost:8080",
)


def _list(value: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None or not value.strip():
        return default
    return tuple(item.strip().rstrip("/") for item in value.split(",") if item.strip())


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be an integer, got {raw!r}") from exc


def _float(env: dict, name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"setting {name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"setting {name} must be a positive number, got {raw!r}")
    return value


def available_cpus(cgroup_root: str | Path = "/sys/fs/cgroup", proc_cgroup: str | Path = "/proc/self/cgroup",
                   affinity: int | None = None) -> int:
    """CPUs this process may actually use: its CPU affinity, capped by a cgroup CPU limit.

    ``os.cpu_count()`` counts the machine's cores, but a container (an AKS pod with ``cpu: "1"``)
    may use only its quota: cgroup v2 ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD", checked on the
    process's own cgroup and its parents) or cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``.
    A quota of 1.5 CPUs counts as 2. Unreadable files mean no limit. At least 1.
    """
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            affinity = os.cpu_count() or 1
    limits = [affinity]
    root = Path(cgroup_root)
    own_v2, own_v1 = "/", "/"
    try:
        for line in Path(proc_cgroup).read_text().splitlines():
            parts = line.strip().split(":", 2)
            if len(parts) != 3:
                continue
            if parts[0] == "0" and parts[1] == "":
                own_v2 = parts[2] or "/"
            elif "cpu" in parts[1].split(","):
                own_v1 = parts[2] or "/"
    except OSError:
        pass

    def quota(q_text: str, p_text: str) -> None:
        try:
            q, p = int(q_text), int(p_text)
        except ValueError:
            return  # "max" or garbage: no limit
        if q > 0 and p > 0:
            limits.append(math.ceil(q / p))

    # cgroup v2: the process's cgroup and each parent up to the mount point may carry a limit.
    rel = Path(own_v2.lstrip("/"))
    for folder in [root / rel, *[root / parent for parent in rel.parents]]:
        try:
            fields = (folder / "cpu.max").read_text().split()
        except OSError:
            continue
        if len(fields) >= 2:
            quota(fields[0], fields[1])
    # cgroup v1: the cpu controller's folder (inside a container its own cgroup is the mount's root).
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for folder in (root / controller / own_v1.lstrip("/"), root / controller):
            try:
                q = (folder / "cpu.cfs_quota_us").read_text().strip()
                p = (folder / "cpu.cfs_period_us").read_text().strip()
            except OSError:
                continue
            quota(q, p)
    return max(1, min(limits))


@dataclass(frozen=True)
class Settings:
    """The service configuration; see the README's configuration table."""

    dataset_path: Path = EMBEDDED_DATASET
    blob_connection_string: str | None = field(default=None, repr=False)
    blob_account_url: str | None = None
    blob_container: str = "datasets"
    blob_prefix: str = ""
    refresh_seconds: int = 300
    blob_connect_timeout: float = 3.0   # seconds to open a connection to the storage account
    blob_read_timeout: float = 3.0      # seconds to wait for each read from it (not for a whole download)
    blob_retries: int = 1               # further tries of a failed storage call within one load
    service_model: str | None = None
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    max_body_bytes: int = 1024 * 1024
    gzip_min_bytes: int = 4096
    result_cache_size: int = 256
    result_cache_bytes: int = 64 * 1024 * 1024   # the result cache's bytes (response bodies), besides its entries
    work_memo_bytes: int = 128 * 1024 * 1024     # per data version: imputed matrices and selections kept
    max_concurrent_predictions: int = 0  # 0: one per usable CPU (see available_cpus)
    max_queued_predictions: int = 64
    request_time_budget_seconds: float = 200.0
    max_buffered_body_bytes: int = 32 * 1024 * 1024
    body_read_timeout_seconds: float = 15.0  # local host: a request body must arrive within this long (408)
    threadpool_threads: int = 1000
    malloc_arena_max: int = 2            # glibc malloc arenas (shared/memory.py); 0: glibc's default (8 per core)
    warm_model_code: bool = True         # import the models' code in the background once the dataset is loaded

    @property
    def uses_blob(self) -> bool:
        return bool(self.blob_connection_string or self.blob_account_url)

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        dataset_path = env.get("DATASET_PATH") or str(EMBEDDED_DATASET)
        path = Path(dataset_path)
        if not path.is_absolute():
            path = PROJECT_ROOT / path
        return cls(
            dataset_path=path,
            blob_connection_string=env.get("DATASET_BLOB_CONNECTION_STRING") or None,
            blob_account_url=env.get("DATASET_BLOB_ACCOUNT_URL") or None,
            blob_container=env.get("DATASET_BLOB_CONTAINER") or "datasets",
            blob_prefix=(env.get("DATASET_BLOB_PREFIX") or "").strip("/"),
            refresh_seconds=_int(env, "DATASET_REFRESH_SECONDS", 300),
            blob_connect_timeout=_float(env, "DATASET_BLOB_CONNECT_TIMEOUT", 3.0),
            blob_read_timeout=_float(env, "DATASET_BLOB_READ_TIMEOUT", 3.0),
            blob_retries=max(0, _int(env, "DATASET_BLOB_RETRIES", 1)),
            service_model=(env.get("SERVICE_MODEL") or "").strip() or None,
            cors_origins=_list(env.get("CORS_ALLOWED_ORIGINS"), DEFAULT_CORS_ORIGINS),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024),
            gzip_min_bytes=_int(env, "GZIP_MIN_BYTES", 4096),
            result_cache_size=_int(env, "RESULT_CACHE_SIZE", 256),
            result_cache_bytes=_int(env, "RESULT_CACHE_BYTES", 64 * 1024 * 1024),
            work_memo_bytes=_int(env, "WORK_MEMO_BYTES", 128 * 1024 * 1024),
            max_concurrent_predictions=_int(env, "MAX_CONCURRENT_PREDICTIONS", 0),
            max_queued_predictions=_int(env, "MAX_QUEUED_PREDICTIONS", 64),
            request_time_budget_seconds=_float(env, "REQUEST_TIME_BUDGET_SECONDS", 200.0),
            max_buffered_body_bytes=_int(env, "MAX_BUFFERED_BODY_BYTES", 32 * 1024 * 1024),
            body_read_timeout_seconds=_float(env, "BODY_READ_TIMEOUT_SECONDS", 15.0),
            # The Functions host's own variable: sync handlers run on a pool of this many threads.
            threadpool_threads=max(1, _int(env, "PYTHON_THREADPOOL_THREAD_COUNT", 1000)),
            malloc_arena_max=max(0, _int(env, "MALLOC_ARENA_MAX", 2)),  # glibc's own variable, also applied at start
            warm_model_code=(env.get("WARM_MODEL_CODE") or "1").strip().lower() not in ("0", "false", "no", "off"),
        )


_SECRET_PARTS = re.compile(r"(AccountKey|SharedAccessSignature|sig|password|secret)=([^;&]+)", re.I)
_URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/?#\s]*@", re.I)


def redact(text: str | None) -> str | None:
    """Hide keys, signatures and URL user-info (user:password@) before they are logged or shown."""
    if text is None:
        return None
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}***@", text)
    return _SECRET_PARTS.sub(lambda m: f"{m.group(1)}=***", text)


_settings: Settings | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def reset_settings(settings: Settings | None = None) -> None:
    """Replace the cached settings (tests and the local host use this)."""
    global _settings
    _settings = settings
