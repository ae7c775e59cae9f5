"""AI Mode runs on a real Azure Storage queue (Azurite): the fan-out, the local host's queue rules, versions.

The plumbing is driven with a stand-in for the model's work (instant files, one indicator that always
fails, one that waits for the test), served by the app's real queue-triggered function through the local
host's listener (local_host/queues.py) with the host.json queue rules; the end-to-end run with the real
model and worker processes killed mid-run is in test_aimode_workers.py.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from conftest import ROOT, free_port, stop_process

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
KEY = "test-function-key"


class AzuriteQueues:
    """A real Azurite queue service on a free port (node_modules/.bin/azurite-queue)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.folder = tempfile.mkdtemp(prefix="azurite-queue-")
        self.connection_string = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};")
        binary = ROOT / "node_modules" / ".bin" / "azurite-queue"
        if not binary.exists():
            raise RuntimeError("Azurite is not installed: run `npm ci` (make test does it)")
        self.proc = subprocess.Popen([str(binary), "--queueHost", "127.0.0.1", "--queuePort", str(self.port),
                                      "--location", self.folder, "--silent", "--skipApiVersionCheck", "--loose"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        from azure.storage.queue import QueueServiceClient

        deadline = time.time() + 30
        while True:
            try:
                list(QueueServiceClient.from_connection_string(self.connection_string, retry_total=0).list_queues())
                return
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, grace: float = 10):
        stop_process(self.proc, grace=grace)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def queues():
    server = AzuriteQueues()
    yield server
    server.stop()


@dataclass
class FakeDataset:
    version: str = "dsv1"


@dataclass
class FakeWork:
    """The model's part of a run, instant: ``bad`` always fails, ``slow`` waits for ``gate``."""

    codes: list[str]
    gate: threading.Event = field(default_factory=threading.Event)
    computed: list[str] = field(default_factory=list)

    def messages(self, ds, req, sample):
        out = {f"model{s}/{c}": {"kind": "file", "slot": s, "indicator": c} for s in req.slots for c in self.codes}
        if sample:
            out.update({f"accuracy/model{s}": {"kind": "accuracy", "slot": s} for s in req.slots})
        return out

    def compute(self, message):
        self.computed.append(message["key"])
        if message["kind"] == "accuracy":
            return {}, {"coverage90": 0.9, "slot": message["slot"]}
        code = message["indicator"]
        if code == "wdi-BAD":
            raise ValueError("this indicator always fails")
        if code == "wdi-SLOW":
            assert self.gate.wait(60)
        return {f"ml/model{message['slot']}/wdi/{code}.json": json.dumps({"data": {"2015": {"ATG": 1}}}).encode()}, {}

    def finish(self, results):
        return {"ml/ML Model Metadata.json": json.dumps({"accuracy": results("accuracy/")}).encode()}


def service_for(tmp: Path, queues: AzuriteQueues, work: FakeWork, queue_name: str):
    from blueprints.aimode import AiMode, read_host_json
    from shared.publish import FolderTarget
    from shared.runs import RunQueue, Runs, queue_options

    runs = Runs(FolderTarget(tmp), RunQueue(queue_name, queues.connection_string))
    return AiMode(runs=runs, work=work, options=queue_options(read_host_json()), dataset=lambda: FakeDataset(),
                  accuracy_sample=1)


def worker_listener(app, queues: AzuriteQueues, queue_name: str, **option_changes):
    """The local host's listener serving the app's queue function (on ``queue_name``), fast retries for a test."""
    from blueprints.aimode import read_host_json
    from local_host.queues import QueueListener, queue_functions
    from shared.runs import queue_options

    functions = [builder._function for builder in app._function_builders]  # app.get_functions() is the worker's
    [(name, _, _, handler)] = [q for q in queue_functions(functions) if q[0] == "queue_aimode_worker"]
    options = replace(queue_options(read_host_json()), **option_changes)
    return QueueListener(name, queue_name, queues.connection_string, handler, options, lease_seconds=30)


def post(routes, path, body, keys=(KEY,), headers=None):
    from shared.routing import dispatch

    raw = json.dumps(body).encode()
    head = {"content-type": "application/json", "content-length": str(len(raw)), **(headers or {})}
    reply, _ = dispatch(routes, "POST", path, "", head, raw, keys=keys)
    return reply.status, json.loads(reply.body)


def get(routes, path, query=""):
    from shared.routing import dispatch

    reply, _ = dispatch(routes, "GET", path, query, {}, b"")
    return reply.status, json.loads(reply.body)


def wait_until(check, timeout=60.0, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not reached in {timeout} s")


def test_run_fans_out_publishes_last_and_reports_the_poisoned_message(tmp_path, queues, app):
    from blueprints.aimode import use_service
    from shared.routing import app_routes

    out = tmp_path / "out"
    # The set published before: it must keep serving until the new manifest.
    (out / "current" / "ml" / "model1" / "wdi").mkdir(parents=True)
    (out / "current" / "ml" / "model1" / "wdi" / "wdi-OLD.json").write_text('{"old": true}')
    (out / "current" / "ml" / "model1" / "wdi" / "wdi-A.json").write_text('{"old": true}')
    (out / "manifest.json").write_text(json.dumps({"version": "old", "dataset_version": "dsv0", "base": "old/",
                                                   "current_base": "current/", "published_at": "x", "messages": 1,
                                                   "done": 1, "failed": [], "files": 1}))
    work = FakeWork(["wdi-A", "wdi-B", "wdi-BAD", "wdi-C", "wdi-SLOW"])
    previous = use_service(service_for(out, queues, work, "aimode-plumbing"))
    routes = app_routes(app)
    listener = worker_listener(app, queues, "aimode-plumbing", visibility_timeout=0.2, batch_size=2,
                               new_batch_threshold=1)
    try:
        status, body = post(routes, "/aimode/runs", {"slots": [1]}, keys=())
        assert status == 401 and body["detail"]["type"] == "unauthorized"
        status, body = post(routes, "/aimode/runs", {"slots": [1]}, keys=(KEY,), headers={"x-functions-key": "wrong"})
        assert status == 401
        status, started = post(routes, "/aimode/runs", {"slots": [1]}, headers={"x-functions-key": KEY})
        assert status == 202, started
        run = started["run"]
        assert run.startswith("dsv1.") and started["total"] == 6  # 5 indicators + the slot's accuracy
        listener.start()

        def waiting_for_slow():
            st = get(routes, "/aimode/status", f"run={run}")[1]["run"]
            return st if st["done"] == 4 and len(st["failed"]) == 1 else None

        st = wait_until(waiting_for_slow)
        assert st["state"] == "running" and st["remaining"] == 1 and st["total"] == 6
        assert st["failed"][0]["key"] == "model1/wdi-BAD" and "always fails" in st["failed"][0]["error"]
        assert st["failed"][0]["dequeue_count"] == 3  # host.json maxDequeueCount
        assert st["rate_per_second"] > 0 and st["seconds_left"] is not None
        # Everything but one message is done: the previous set still serves, untouched.
        assert json.loads((out / "manifest.json").read_text())["version"] == "old"
        assert (out / "current/ml/model1/wdi/wdi-A.json").read_text() == '{"old": true}'
        assert (out / f"{run}/ml/model1/wdi/wdi-A.json").exists()
        # recorded by the function on its last dequeue, then moved to the poison queue by the host (listener)
        poison = service_for(out, queues, work, "aimode-plumbing").runs.queue
        poisoned = wait_until(lambda: [json.loads(t) for t in poison.poisoned()], timeout=10)
        assert [m["key"] for m in poisoned] == ["model1/wdi-BAD"]

        work.gate.set()
        published = wait_until(lambda: get(routes, "/aimode/status")[1]["current"]["version"] == run)
        assert published
        st = get(routes, "/aimode/status")[1]
        assert st["run"]["state"] == "published" and st["run"]["done"] == 5
        assert st["current"]["failed"] == ["model1/wdi-BAD"]
        current = out / "current"
        assert sorted(p.name for p in (current / "ml/model1/wdi").iterdir()) == [
            "wdi-A.json", "wdi-B.json", "wdi-C.json", "wdi-SLOW.json"]  # the old set's extra file is gone
        assert json.loads((current / "ml/model1/wdi/wdi-A.json").read_text()) == {"data": {"2015": {"ATG": 1}}}
        assert json.loads((current / "ml/ML Model Metadata.json").read_text())["accuracy"]["accuracy/model1"][
            "coverage90"] == 0.9
        assert json.loads((current / "manifest.json").read_text())["version"] == run
        # at most 3 tries of the failing one; each other message computed once
        assert work.computed.count("model1/wdi-BAD") == 3
        assert all(work.computed.count(k) == 1 for k in set(work.computed) - {"model1/wdi-BAD"})
    finally:
        work.gate.set()
        listener.stop()
        use_service(previous)


def test_redelivered_message_is_not_computed_twice(tmp_path, queues):
    """At-least-once delivery: a message delivered again after it was done writes nothing new."""
    from azure.functions.queue import QueueMessage

    work = FakeWork(["wdi-A"])
    svc = service_for(tmp_path, queues, work, "aimode-redelivery")
    from blueprints.aimode import RunRequest

    run = svc.start(RunRequest(slots=[2], accuracy_sample=0))
    [text] = [m.content for m in svc.runs.queue.queue.receive_messages()]
    msg = QueueMessage(id="1", body=text.encode(), dequeue_count=1)
    assert svc.process(msg) == "done"
    assert svc.process(msg) == "already done"
    assert work.computed == ["model2/wdi-A"]
    assert json.loads((tmp_path / "manifest.json").read_text())["version"] == run["run"]


@pytest.fixture(params=["folder", "blob"])
def target(request, tmp_path):
    from shared.publish import BlobTarget, FolderTarget

    if request.param == "folder":
        return FolderTarget(tmp_path / "out")
    azurite = request.getfixturevalue("azurite")  # the real blob emulator
    return BlobTarget(f"aimode-{int(time.time() * 1000) % 10**9}", connection_string=azurite.connection_string)


def test_publish_targets_write_list_create_once_copy_and_delete(target):
    assert target.read("a/b.json") is None and target.names("a/") == []
    target.write("a/b.json", b"1")
    target.write("a/b.json", b"2")  # replaced whole
    target.write("a/c d.json", b"3")
    assert target.read("a/b.json") == b"2"
    assert target.names("a/") == ["a/b.json", "a/c d.json"]
    assert target.create("marker", b"x") is True
    assert target.create("marker", b"y") is False and target.read("marker") == b"x"  # only once, by anyone
    target.copy("a/b.json", "current/a/b.json")
    assert target.read("current/a/b.json") == b"2"
    target.delete("a/b.json")
    target.delete("a/b.json")  # deleting what is gone is fine
    assert target.names("a/") == ["a/c d.json"]
    with pytest.raises(ValueError):
        target.write("../escape.json", b"")


def test_a_run_publishes_to_a_blob_container(azurite, queues):
    """The same run as on a folder, on a real blob container (Azurite): the set, the manifest, current/."""
    from azure.functions.queue import QueueMessage

    from blueprints.aimode import AiMode, RunRequest, read_host_json
    from shared.publish import BlobTarget
    from shared.runs import RunQueue, Runs, queue_options

    blob = BlobTarget("aimode-run", connection_string=azurite.connection_string)
    work = FakeWork(["wdi-A", "wdi-B"])
    svc = AiMode(runs=Runs(blob, RunQueue("aimode-blob", queues.connection_string)), work=work,
                 options=queue_options(read_host_json()), dataset=lambda: FakeDataset(), accuracy_sample=1)
    run = svc.start(RunRequest(slots=[3]))["run"]
    for m in svc.runs.queue.queue.receive_messages(messages_per_page=10):
        svc.process(QueueMessage(id=m.id, body=m.content.encode(), dequeue_count=1))
    manifest = json.loads(blob.read("manifest.json"))
    assert manifest["version"] == run and manifest["done"] == 3 and manifest["failed"] == []
    assert json.loads(blob.read("current/manifest.json"))["version"] == run
    assert blob.read("current/ml/model3/wdi/wdi-B.json") == blob.read(f"{run}/ml/model3/wdi/wdi-B.json") is not None
    assert json.loads(blob.read("current/ml/ML Model Metadata.json"))["accuracy"]["accuracy/model3"]["slot"] == 3


def test_a_new_dataset_version_starts_one_run_whoever_sees_it(tmp_path, queues):
    """AI_MODE_RUN_ON_NEW_DATA: the store's new version starts a run, once per version across instances."""
    from helpers import write_manifest

    from shared.store import DatasetStore, LocalFolderSource

    data = tmp_path / "data"
    shutil.copytree(ROOT / "data" / "wdi", data)
    svc = service_for(tmp_path / "out", queues, FakeWork(["wdi-A"]), "aimode-newdata")
    store = DatasetStore(LocalFolderSource(data))
    store.subscribe(svc.on_new_dataset)
    assert store.refresh()
    first = wait_until(svc.runs.latest, timeout=30)
    assert first.startswith(store.get().version + ".")
    svc.on_new_dataset(store.get())  # another instance seeing the same version: no second run
    assert not store.refresh()       # nothing changed: no load, no run
    time.sleep(0.5)
    assert svc.runs.latest() == first and len(svc.runs.target.names("runs/started/")) == 1

    csv = data / "indicatorData.csv"
    lines = csv.read_text().splitlines()
    lines[1] = lines[1] + "1" if lines[1].endswith(",") else lines[1][:-1] + "7"  # one value changed
    csv.write_text("\n".join(lines) + "\n")
    write_manifest(data)
    assert store.refresh()
    second = wait_until(lambda: svc.runs.latest() if svc.runs.latest() != first else None, timeout=30)
    assert second.startswith(store.get().version + ".") and store.get().version not in first


def test_a_message_whose_last_try_never_finished_is_poisoned_and_reported(tmp_path, queues, app):
    """A worker that died on the last dequeue never recorded anything: the host moves the message to the poison
    queue when it is fetched again, and the run finds it there once its queue is empty."""
    from blueprints.aimode import RunRequest, use_service

    work = FakeWork(["wdi-A"])
    svc = service_for(tmp_path, queues, work, "aimode-lost")
    run = svc.start(RunRequest(slots=[4], accuracy_sample=0))["run"]
    for _ in range(3):  # three tries that never finished (their workers died): the message comes back each time
        [m] = list(svc.runs.queue.queue.receive_messages(visibility_timeout=1))
        time.sleep(1.2)
    assert m.dequeue_count == 3
    previous = use_service(svc)
    listener = worker_listener(app, queues, "aimode-lost")
    try:
        listener.start()
        poisoned = wait_until(lambda: svc.runs.queue.poisoned(), timeout=20)
        assert [json.loads(t)["key"] for t in poisoned] == ["model4/wdi-A"]
        assert work.computed == []  # not tried a fourth time
        status = wait_until(lambda: svc.status(run)["run"] if svc.status(run)["run"]["failed"] else None, timeout=20)
        assert status["failed"][0]["key"] == "model4/wdi-A" and "poison" in status["failed"][0]["error"]
        assert svc.runs.manifest()["version"] == run and svc.runs.manifest()["failed"] == ["model4/wdi-A"]
    finally:
        listener.stop()
        use_service(previous)


def test_an_older_run_finishing_late_never_replaces_a_newer_set(tmp_path, queues):
    from azure.functions.queue import QueueMessage

    from blueprints.aimode import RunRequest

    svc = service_for(tmp_path, queues, FakeWork(["wdi-A"]), "aimode-order")
    older = svc.start(RunRequest(slots=[1], accuracy_sample=0))["run"]
    [old_message] = list(svc.runs.queue.queue.receive_messages(visibility_timeout=60))
    newer = svc.start(RunRequest(slots=[1], accuracy_sample=0))["run"]
    [new_message] = list(svc.runs.queue.queue.receive_messages(visibility_timeout=60))
    assert json.loads(new_message.content)["run"] == newer != older
    for m in (new_message, old_message):  # the newer run finishes first
        svc.process(QueueMessage(id=m.id, body=m.content.encode(), dequeue_count=1))
    assert svc.runs.manifest()["version"] == newer
    assert json.loads((tmp_path / "current/manifest.json").read_text())["version"] == newer
    assert svc.status(older)["run"]["state"] == "superseded"
    assert svc.status(newer)["run"]["state"] == "published"


def test_a_listener_started_before_its_storage_polls_again_within_the_polling_interval():
    """A listener whose queue service is not up yet (Azurite still starting, a storage outage) keeps to the host's
    back-off (at most maxPollingInterval between polls): the storage SDK's own retries, which sleep 15 s and more,
    held the first message of a one-process benchmark run 13-17 s after it was enqueued."""
    from azure.storage.queue import QueueClient

    from blueprints.aimode import read_host_json
    from local_host.queues import QueueListener
    from shared.runs import queue_options

    port = free_port()
    connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                  f"QueueEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};")
    options = queue_options(read_host_json())
    handled: list[float] = []
    listener = QueueListener("late", "aimode-late", connection, lambda msg: handled.append(time.time()), options,
                             lease_seconds=30)
    listener.start()
    server = None
    try:
        time.sleep(1.0)  # the first polls find no storage
        server = AzuriteQueues(port)
        client = QueueClient.from_connection_string(server.connection_string, "aimode-late")
        client.create_queue()
        client.send_message("one")
        sent = time.time()
        wait_until(lambda: handled, timeout=30)
        assert handled[0] - sent < options.max_polling_interval * 1.2 + 2.0, handled[0] - sent
    finally:
        listener.stop()
        if server is not None:
            server.stop(grace=1)
