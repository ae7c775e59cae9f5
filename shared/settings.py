"""Every setting the service reads from its environment, in one place.

Locally the values come from the shell or from ``local.settings.json`` (which
``func start`` and the local host both load); in Azure they are app settings.
"""
from __future__ import annotations

import math
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATASET = PROJECT_ROOT / "data" / "wdi"

DEFAULT_CORS_ORIGINS = (
    "https://lenseg.github.io",
    "https://sids-dashboard.github.io",
    "https://data.undp.org",
    "http://localhost",
    "http://localhost:8080",
)


def _positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a positive number, got {value!r}")
    return value


PositiveSeconds = Annotated[float, AfterValidator(_positive)]


_ENV: ContextVar[Mapping[str, str] | None] = ContextVar("sids_settings_env", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]):
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name: value for name, value in self._env.items() if not (self.env_ignore_empty and value == "")}


def _env(name: str, default: Any = None, **kwargs: Any) -> Any:
    return Field(default, validation_alias=name, **kwargs)


class Settings(BaseSettings):
    """The service configuration, one typed model; see the README's configuration table.

    ``Settings(...)`` holds the values given (the rest are defaults); :meth:`from_env` reads the
    environment variables named by each field's alias. Secrets are ``SecretStr``: printed or logged,
    they show as ``**********``; ``.get_secret_value()`` where they are used.
    """

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, extra="ignore", case_sensitive=True,
                                      env_ignore_empty=True, hide_input_in_errors=True)

    dataset_path: Path = _env("DATASET_PATH", EMBEDDED_DATASET)
    blob_connection_string: Optional[SecretStr] = _env("DATASET_BLOB_CONNECTION_STRING")
    blob_account_url: Optional[str] = _env("DATASET_BLOB_ACCOUNT_URL")
    blob_container: str = _env("DATASET_BLOB_CONTAINER", "datasets")
    blob_prefix: str = _env("DATASET_BLOB_PREFIX", "")
    refresh_seconds: int = _env("DATASET_REFRESH_SECONDS", 300)
    blob_connect_timeout: PositiveSeconds = _env("DATASET_BLOB_CONNECT_TIMEOUT", 3.0)  # to open a connection
    blob_read_timeout: PositiveSeconds = _env("DATASET_BLOB_READ_TIMEOUT", 3.0)  # each read (not a whole download)
    blob_retries: int = _env("DATASET_BLOB_RETRIES", 1)  # further tries of a failed storage call within one load
    # without a manifest, a reload keeping less than this share of the rows or indicators is refused
    shrink_limit: float = _env("DATASET_SHRINK_LIMIT", 0.5)
    service_model: Optional[str] = _env("SERVICE_MODEL")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = _env("CORS_ALLOWED_ORIGINS", DEFAULT_CORS_ORIGINS)
    max_body_bytes: int = _env("MAX_BODY_BYTES", 1024 * 1024)
    gzip_min_bytes: int = _env("GZIP_MIN_BYTES", 4096)
    result_cache_size: int = _env("RESULT_CACHE_SIZE", 256)
    result_cache_bytes: int = _env("RESULT_CACHE_BYTES", 64 * 1024 * 1024)  # the result cache's bytes, besides its entries
    work_memo_bytes: int = _env("WORK_MEMO_BYTES", 128 * 1024 * 1024)  # per data version: imputed matrices, selections
    max_concurrent_predictions: int = _env("MAX_CONCURRENT_PREDICTIONS", 0)  # 0: one per usable CPU
    max_queued_predictions: int = _env("MAX_QUEUED_PREDICTIONS", 64)
    request_time_budget_seconds: PositiveSeconds = _env("REQUEST_TIME_BUDGET_SECONDS", 200.0)
    max_buffered_body_bytes: int = _env("MAX_BUFFERED_BODY_BYTES", 32 * 1024 * 1024)
    body_read_timeout_seconds: PositiveSeconds = _env("BODY_READ_TIMEOUT_SECONDS", 15.0)  # local host: else 408
    malloc_arena_max: int = _env("MALLOC_ARENA_MAX", 2)  # glibc malloc arenas (shared/memory.py); 0: glibc's default
    # The Functions host's own variable: sync handlers run on a pool of this many threads.
    threadpool_threads: int = _env("PYTHON_THREADPOOL_THREAD_COUNT", 1000)
    warm_model_code: bool = _env("WARM_MODEL_CODE", True)  # import the models' code in the background after the load
    # Telemetry (shared/telemetry.py): on when a connection string is set; the worker's own switch;
    # "Authorization=AAD[;ClientId=...]" publishes with the app's managed identity instead of the key.
    appinsights_connection_string: Optional[SecretStr] = _env("APPLICATIONINSIGHTS_CONNECTION_STRING")
    appinsights_authentication_string: Optional[SecretStr] = _env("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    worker_telemetry: bool = _env("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", False)
    # OpenTelemetry's own sampler variable (the distro reads it); unset: every request is traced
    traces_sampler: Optional[str] = _env("OTEL_TRACES_SAMPLER")
    # AI Mode publishing (make ai-mode, blueprints/aimode.py): where the files go, the queue the runs fan out on
    ai_mode_out: Path = _env("AI_MODE_OUT", PROJECT_ROOT / "out" / "ai-mode")  # make ai-mode; runs without a container
    ai_mode_limit: int = _env("AI_MODE_LIMIT", 0)            # make ai-mode: only the first n indicators (0: all)
    ai_mode_slots: Annotated[tuple[int, ...], NoDecode] = _env("AI_MODE_SLOTS", (1, 2, 3, 4))  # the slots to publish
    ai_mode_blob_connection_string: Optional[SecretStr] = _env("AI_MODE_BLOB_CONNECTION_STRING")
    ai_mode_blob_account_url: Optional[str] = _env("AI_MODE_BLOB_ACCOUNT_URL")
    ai_mode_blob_container: str = _env("AI_MODE_BLOB_CONTAINER", "ai-mode")
    ai_mode_run_on_new_data: bool = _env("AI_MODE_RUN_ON_NEW_DATA", False)  # a run when the store loads a new version
    ai_mode_accuracy_sample: int = _env("AI_MODE_ACCURACY_SAMPLE", 120)  # indicator-years per slot in the holdout
    # The Functions host's storage connection: the queue triggers read it, the runs enqueue on it
    # (or, with a managed identity, AzureWebJobsStorage__queueServiceUri / __accountName).
    queue_connection_string: Optional[SecretStr] = _env("AzureWebJobsStorage")
    queue_service_uri: Optional[str] = _env("AzureWebJobsStorage__queueServiceUri")
    queue_account_name: Optional[str] = _env("AzureWebJobsStorage__accountName")
    local_function_key: Optional[SecretStr] = _env("LOCAL_FUNCTION_KEY")  # local host: the key of AuthLevel.FUNCTION routes
    # local host: visibility of a message while a function runs (the host's 10 min)
    local_queue_lease_seconds: PositiveSeconds = _env("LOCAL_QUEUE_LEASE_SECONDS", 600.0)

    @field_validator("dataset_path", "ai_mode_out", mode="after")
    @classmethod
    def _under_project(cls, path: Path) -> Path:
        return path if path.is_absolute() else PROJECT_ROOT / path

    @field_validator("blob_prefix", mode="after")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.strip().strip("/")

    @field_validator("service_model", "blob_account_url", mode="after")
    @classmethod
    def _blank_is_none(cls, value: Optional[str]) -> Optional[str]:
        return (value or "").strip() or None

    @field_validator("blob_retries", "ai_mode_limit", "ai_mode_accuracy_sample", "malloc_arena_max", mode="after")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        return max(0, value)

    @field_validator("ai_mode_slots", mode="before")
    @classmethod
    def _slots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(int(item) for item in value.split(",") if item.strip()) or (1, 2, 3, 4)
        return value

    @property
    def queue_endpoint(self) -> Optional[str]:
        """The queue service's URL for a managed identity: __queueServiceUri, or from __accountName."""
        if self.queue_service_uri:
            return self.queue_service_uri
        return f"https://{self.queue_account_name}.queue.core.windows.net" if self.queue_account_name else None

    @field_validator("shrink_limit", mode="after")
    @classmethod
    def _share(cls, value: float) -> float:
        return min(1.0, _positive(value))

    @field_validator("threadpool_threads", mode="after")
    @classmethod
    def _threads(cls, value: int) -> int:
        return max(1, value)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            items = tuple(item.strip().rstrip("/") for item in value.split(",") if item.strip())
            return items or DEFAULT_CORS_ORIGINS
        return value

    @property
    def uses_blob(self) -> bool:
        return bool(self.blob_connection_string or self.blob_account_url)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        env = _ENV.get()
        return (init_settings,) if env is None else (init_settings, _MappingEnvSource(settings_cls, env))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The settings the environment (``os.environ``, or ``env``) sets; ValueError naming a malformed one."""
        token = _ENV.set(dict(os.environ if env is None else env))
        try:
            return cls()
        except ValidationError as exc:
            problems = "; ".join(f"setting {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(problems) from None
        finally:
            _ENV.reset(token)


def secret_value(secret: SecretStr | None) -> str | None:
    """The plain value of an optional secret setting, where it is used (never to log)."""
    return secret.get_secret_value() if secret is not None else None


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
