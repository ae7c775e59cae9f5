"""AI Mode publishing (/aimode): the dashboard's precomputed files, fanned out over an Azure Storage queue.

* ``POST /aimode/runs`` (function key: ``x-functions-key`` header or ``?code=``; never anonymous) starts a run
  on the dataset version this instance serves: one queue message per (slot, indicator), plus one per slot and
  sampled indicator-year measuring the slot's accuracy (masked holdout, ``AI_MODE_ACCURACY_SAMPLE`` of them);
* the queue-triggered function ``queue_aimode_worker`` computes one message (one indicator file);
* ``GET /aimode/status``: the current published version and the latest (or a given) run's progress.

The run's bookkeeping (versions, records, manifest, the ``current/`` copy) is :mod:`shared.runs`; the files'
computation is :mod:`models.twolvlimp.aimode` (imported on first use: scikit-learn). What the blueprint keeps
is one :class:`AiMode` built from the settings on first use (:func:`service`); tests build their own
(:func:`use_service`). With ``AI_MODE_RUN_ON_NEW_DATA=1`` a run also starts when the store loads a new
dataset version (once per version, whichever instance sees it first).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import azure.functions as func
from pydantic import Field, field_validator

from shared.dataset import Dataset
from shared.errors import NotFound, ServiceError, UnsupportedValue
from shared.http import ApiBlueprint
from shared.imports import import_model_code
from shared.instance import InstanceSlot
from shared.publish import target_from_settings
from shared.runs import QueueOptions, RunQueue, Runs, UnknownRun, queue_options
from shared.settings import PROJECT_ROOT, Settings, get_settings, secret_value
from shared.store import get_dataset, get_store
from shared.validation import ApiModel

if TYPE_CHECKING:
    from models.twolvlimp import aimode as aimode_model  # noqa: F401  (imported on first use: import_model_code)

MODEL_PACKAGE = "twolvlimp"   # the model package this blueprint serves (scripts/architecture.py reads it)
QUEUE = "aimode"              # the queue the runs fan out on; the host moves failing messages to aimode-poison
CONNECTION = "AzureWebJobsStorage"  # the app setting holding the queue's connection (the host's own storage)
MODEL_CODE = ("models.twolvlimp.aimode",)

log = logging.getLogger("sids.aimode")

blueprint = ApiBlueprint(
    "aimode", label="AI Mode publishing", prefix="aimode",
    description=("Publishes the dashboard's AI Mode files (ml/model<N>/<dataset>/<code>.json, every SIDS and year) "
                 "computed by the two-level method, one queue message per slot and indicator, as versioned sets: "
                 "a set becomes current when every message is done or reported failed."))


class RunRequest(ApiModel):
    slots: list[int] = Field([1, 2, 3, 4], title="Model slots", description="The page's panels to publish (1-4)",
                             min_length=1, max_length=4, examples=[[1]])
    limit: Optional[int] = Field(None, title="Indicators", description="Only the first n publishable indicators",
                                 ge=1, le=100000, examples=[5])
    indicators: Optional[list[str]] = Field(None, title="Indicator codes",
                                            description="Exactly these indicators instead of every publishable one",
                                            max_length=10000)
    accuracy_sample: Optional[int] = Field(None, title="Accuracy sample", ge=0, le=1000,
                                           description="Indicator-years per slot in the masked holdout "
                                                       "(default AI_MODE_ACCURACY_SAMPLE; 0: none)")

    @field_validator("slots")
    @classmethod
    def _known_slots(cls, slots: list[int]) -> list[int]:
        bad = [s for s in slots if s not in (1, 2, 3, 4)]
        if bad or len(set(slots)) != len(slots):
            raise ValueError("slots are distinct numbers among 1, 2, 3, 4")
        return sorted(slots)

    @field_validator("indicators")
    @classmethod
    def _codes(cls, codes: list[str] | None) -> list[str] | None:
        if codes is not None and any(not c or len(c) > 200 or "/" in c or c.startswith(".") for c in codes):
            raise ValueError("indicator codes are non-empty, at most 200 characters, without '/'")
        return codes


class RunStarted(ApiModel):
    run: str = Field(..., description="The run, also the version its files are published under")
    dataset_version: str
    total: int = Field(..., description="Messages enqueued")
    status: str = Field(..., description="Where to follow it")


class Failure(ApiModel):
    key: str = Field(..., description="model<N>/<indicator code>, or accuracy/model<N>/<case>")
    error: str
    dequeue_count: Optional[int] = None
    failed_at: Optional[str] = None


class RunStatus(ApiModel):
    run: str
    dataset_version: str
    started_at: str
    state: str = Field(..., description="running, finishing (every message done or failed), published, or "
                                        "superseded (finished after a later run was published: not made current)")
    total: int
    done: int
    failed: list[Failure]
    remaining: int
    pending_in_queue: Optional[int] = None
    elapsed_seconds: float
    rate_per_second: float
    seconds_left: Optional[float] = None
    info: dict[str, Any] = {}
    accuracy: Optional[dict[str, dict[str, Any]]] = Field(
        None, description="Once the run is finished: each slot's measured accuracy (\"Model <N>\": NRMSE, 90% interval "
                          "coverage, their standard errors, the indicator-years and hidden values of the sample), as "
                          "in the set's ML Model Metadata.json")


class Published(ApiModel):
    version: str
    dataset_version: str
    base: str = Field(..., description="The set's immutable folder (base URL: <container URL>/<base>)")
    current_base: str = Field(..., description="The folder always holding the current set")
    published_at: str
    messages: int
    done: int
    failed: list[str]
    files: int


class StatusResponse(ApiModel):
    current: Optional[Published] = Field(None, description="The set the manifest makes current (none yet: null)")
    run: Optional[RunStatus] = None


class StatusQuery(ApiModel):
    run: Optional[str] = Field(None, description="A run id (default: the latest)", max_length=200,
                               pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


# -------------------------------------------------------------------------------------------- the work
def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode()


@dataclass
class AiModeWork:
    """What an AI Mode run computes, with the model's functions (models/twolvlimp/aimode.py)."""

    dataset: Callable[[], Dataset] = get_dataset

    @staticmethod
    def model():
        return import_model_code("models.twolvlimp.aimode")

    def messages(self, ds: Dataset, req: RunRequest, sample: int) -> dict[str, dict]:
        codes = req.indicators if req.indicators is not None else self.model().publishable_indicators(ds)
        unknown = [c for c in codes if c not in ds.indicators]
        if unknown:
            raise UnsupportedValue(f"{len(unknown)} indicator code(s) not in the dataset: {', '.join(unknown[:5])}")
        if req.limit is not None:
            codes = codes[:req.limit]
        out = {f"model{s}/{c}": {"kind": "file", "slot": s, "indicator": c} for s in req.slots for c in codes}
        # the measured accuracy: one message per slot and sampled indicator-year (each a masked holdout)
        cases = self.model().accuracy_sample(ds, sample) if sample > 0 else []
        out.update({f"accuracy/model{s}/{i:04d}": {"kind": "accuracy", "slot": s, "indicator": c, "year": y}
                    for s in req.slots for i, (c, y) in enumerate(cases)})
        return out

    def compute(self, message: dict) -> tuple[dict[str, bytes], Any]:
        model, ds = self.model(), self.dataset()
        slot = int(message["slot"])
        if message["kind"] == "accuracy":
            return {}, model.holdout_accuracy(ds, slot, [(message["indicator"], int(message["year"]))])
        code = message["indicator"]
        doc = model.indicator_file(ds, code, slot)
        problems = model.file_problems(ds, code, doc)
        if problems:
            raise ValueError(f"{code}: the file breaks the page's rules: {'; '.join(problems[:3])}")
        return {model.file_path(slot, code): _json(doc)}, {"years": len(doc.get("data", {}))}

    def finish(self, results: Callable[[str], dict[str, Any]]) -> dict[str, bytes]:
        model = self.model()
        parts: dict[int, list[dict]] = {}
        for key, value in results("accuracy/").items():  # accuracy/model<N>/<case>
            parts.setdefault(int(key.split("/")[1][len("model"):]), []).append(value)
        accuracy = {slot: model.combine_accuracy(found) for slot, found in sorted(parts.items())}
        return {model.METADATA_PATH: _json(model.model_metadata(accuracy))}


# ------------------------------------------------------------------------------------------ the service
@dataclass
class AiMode:
    """This instance's AI Mode publisher: the run store and queue, the work, the host's queue rules."""

    runs: Runs
    work: Any                     # an AiModeWork, or a test's stand-in with the same methods
    options: QueueOptions
    dataset: Callable[[], Dataset] = get_dataset
    accuracy_sample: int = 120

    def start(self, req: RunRequest, ds: Dataset | None = None) -> dict:
        ds = ds or self.dataset()
        sample = self.accuracy_sample if req.accuracy_sample is None else req.accuracy_sample
        messages = self.work.messages(ds, req, sample)
        if not messages:
            raise UnsupportedValue("no indicator to publish in this dataset")
        files = sum(1 for m in messages.values() if m["kind"] == "file")
        return self.runs.start(ds.version, messages, {"slots": req.slots, "files": files,
                                                      "accuracy_cases": len(messages) - files})

    def process(self, msg: func.QueueMessage) -> str:
        text = msg.get_body().decode("utf-8")
        return self.runs.process(text, self.work, int(msg.dequeue_count or 1), self.options.max_dequeue_count,
                                 dataset_version=self.dataset().version)

    def status(self, run: str | None = None) -> dict:
        out = self.runs.status(run, self.work)
        state = out["run"] and out["run"]["state"]
        if state in ("published", "superseded"):
            raw = self.runs.target.read(f"{out['run']['run']}/{AiModeWork.model().METADATA_PATH}")
            metadata = json.loads(raw) if raw is not None else {}
            out["run"]["accuracy"] = {name: entry["accuracy"] for name, entry in metadata.items()
                                      if isinstance(entry, dict) and isinstance(entry.get("accuracy"), dict)}
        return out

    def on_new_dataset(self, ds: Dataset) -> None:
        """AI_MODE_RUN_ON_NEW_DATA: a run of every slot on a newly loaded dataset version (once per version)."""
        try:
            started = self.runs.start_once(f"dataset-{ds.version}", lambda: self.start(RunRequest(), ds))
            if started:
                log.info("run %s started for the new dataset version %s", started["run"], ds.version)
        except Exception:
            log.exception("could not start an AI Mode run for dataset version %s", ds.version)


class QueueNotConfigured(ServiceError):
    """This instance has no storage queue to fan a run out on (a set-up matter, whatever the request)."""

    status = 503
    error_type = "not_configured"


def read_host_json() -> dict:
    return json.loads((PROJECT_ROOT / "host.json").read_text())


def build_service(settings: Settings) -> AiMode:
    queue = None
    if settings.queue_connection_string or settings.queue_endpoint:
        queue = RunQueue(QUEUE, secret_value(settings.queue_connection_string), settings.queue_endpoint)
    return AiMode(runs=Runs(target_from_settings(settings), queue), work=AiModeWork(),
                  options=queue_options(read_host_json()), accuracy_sample=settings.ai_mode_accuracy_sample)


# the routes and the queue function serve this (tests: use_service(their own); None: built again on next use)
_service: InstanceSlot[AiMode] = InstanceSlot(lambda: build_service(get_settings()))
service = _service.get
use_service = _service.replace


# ------------------------------------------------------------------------------------------ the routes
@blueprint.post("runs", body=RunRequest, response=RunStarted, status=202, auth_level=func.AuthLevel.FUNCTION,
                errors=(401, 503))  # 422 (validation, codes not in the dataset) is documented with the body
def start_run(req: RunRequest) -> RunStarted:
    """Start a run: one queue message per slot and indicator, on the dataset version served now.

    Needs a function key (`x-functions-key` header or `code` query parameter). Answers 202 at once; follow
    the run at /aimode/status. The files are published under the run's version; the set becomes current
    (manifest.json, then the copy under current/) when every message is done or reported failed."""
    svc = service()
    if svc.runs.queue is None:
        raise QueueNotConfigured("No queue is configured for AI Mode runs: set AzureWebJobsStorage")
    run = svc.start(req)
    return RunStarted(run=run["run"], dataset_version=run["dataset_version"], total=run["total"],
                      status=f"/aimode/status?run={run['run']}")


@blueprint.get("status", query=StatusQuery, response=StatusResponse, errors=(404,))
def run_status(query: StatusQuery) -> StatusResponse:
    """The published set (version, when, failures) and a run's progress: total, done, failed with the
    indicator and error, rate and time left (default: the latest run)."""
    try:
        return StatusResponse.model_validate(service().status(query.run))
    except UnknownRun as exc:
        raise NotFound(f"No run {query.run!r}") from exc


@blueprint.function_name("queue_aimode_worker")
@blueprint.queue_trigger(arg_name="msg", queue_name=QUEUE, connection=CONNECTION)
def worker(msg: func.QueueMessage) -> None:
    """One message of a run: one indicator file of one slot (or one slot's accuracy)."""
    service().process(msg)


def _subscribe_new_versions() -> None:
    if get_settings().ai_mode_run_on_new_data:
        get_store().subscribe(lambda ds: service().on_new_dataset(ds))


_subscribe_new_versions()
