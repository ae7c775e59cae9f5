"""Faults, with a real Azurite as the dataset store and the local host serving the app.

Each test publishes its own dataset under its own container and prefix, starts the
local host on it with ``DATASET_REFRESH_SECONDS=1`` and then breaks something while
requests flow:

* the store goes away: requests keep being answered from the cached copy, /health
  says ``degraded``, and it goes back to ``ok`` by itself when the store returns;
* a file is replaced by a corrupt one: the good version keeps serving, /health names
  the file in ``last_error``, nothing crashes; a fixed file is then picked up;
* a new version is published file by file: it is picked up without a restart and no
  answer ever comes from a mix of the two versions;
* many concurrent predictions run while the reload happens: none fails and each
  answer is exactly the old version's or the new version's answer.

Versions are told apart by what the data says: version B renames the dataset, drops
40 indicators and doubles every value, so an answer built from parts of A and parts
of B does not look like either.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from conftest import ROOT, start_local_host, stop_process

WDI = ROOT / "data" / "wdi"
FILES = ("datasetMeta.csv", "indicatorMeta.csv", "indicatorData.csv", "countryMeta.csv")
B_NAME = "World Development Indicators (version B)"
DROPPED = 40

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- datasets
def version_a() -> dict[str, bytes]:
    return {name: (WDI / name).read_bytes() for name in FILES}


def version_b(keep: set[str] = frozenset()) -> dict[str, bytes]:
    """WDI with another dataset name, 40 fewer indicators and every value doubled."""
    meta = pd.read_csv(WDI / "indicatorMeta.csv", dtype=str, keep_default_na=False)
    droppable = [c for c in sorted(meta["Indicator Code"]) if c not in keep]
    dropped = set(droppable[-DROPPED:])
    meta = meta[~meta["Indicator Code"].isin(dropped)]
    data = pd.read_csv(WDI / "indicatorData.csv")
    data = data[~data["Indicator Code"].isin(dropped)]
    years = [c for c in data.columns if c.isdigit()]
    data[years] = data[years] * 2
    dsets = pd.read_csv(WDI / "datasetMeta.csv", dtype=str, keep_default_na=False)
    dsets.loc[dsets["Dataset Code"] == "wdi", "Dataset Name"] = B_NAME
    return {
        "datasetMeta.csv": dsets.to_csv(index=False).encode(),
        "indicatorMeta.csv": meta.to_csv(index=False).encode(),
        "indicatorData.csv": data.to_csv(index=False).encode(),
        "countryMeta.csv": (WDI / "countryMeta.csv").read_bytes(),
    }


A_INDICATORS = len(pd.read_csv(WDI / "indicatorMeta.csv", dtype=str))
SIGNATURE_A = ("World Development Indicators", A_INDICATORS)
SIGNATURE_B = (B_NAME, A_INDICATORS - DROPPED)


class Published:
    """A container/prefix of our own in Azurite, and the local host serving it."""

    def __init__(self, azurite, files: dict[str, bytes]):
        self.azurite = azurite
        self.container = f"faults{uuid.uuid4().hex[:12]}"
        self.prefix = f"ds-{uuid.uuid4().hex[:6]}"
        client = azurite.service().get_container_client(self.container)
        client.create_container()
        self.client = client
        self.publish(files)
        self.proc, self.base, self.log = start_local_host({
            "DATASET_BLOB_CONNECTION_STRING": azurite.connection_string,
            "DATASET_BLOB_CONTAINER": self.container,
            "DATASET_BLOB_PREFIX": self.prefix,
            "DATASET_REFRESH_SECONDS": "1",
        })
        self.http = httpx.Client(base_url=self.base, timeout=60)

    def publish(self, files: dict[str, bytes], pause: float = 0.0) -> None:
        for i, (name, content) in enumerate(files.items()):
            if i and pause:
                time.sleep(pause)
            self.client.upload_blob(f"{self.prefix}/{name}", content, overwrite=True)

    def health(self) -> dict:
        return self.http.get("/health").json()

    def wait_health(self, predicate, timeout: float = 45, what: str = "") -> dict:
        deadline = time.time() + timeout
        while True:
            health = self.health()
            if predicate(health):
                return health
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}: last /health {health}")
            time.sleep(0.2)

    def close(self) -> None:
        self.http.close()
        stop_process(self.proc)

    def assert_alive_and_clean(self) -> None:
        assert self.proc.poll() is None, "the local host died"
        logged = self.log.read_text()
        assert "Traceback" not in logged, logged[logged.index("Traceback") - 500:][:3000]


@pytest.fixture
def published(azurite):
    made: list[Published] = []

    def start(files: dict[str, bytes]) -> Published:
        made.append(Published(azurite, files))
        return made[-1]

    yield start
    for p in made:
        p.close()


def signature(datasets_answer: list[dict]) -> tuple[str, int]:
    wdi = next(d for d in datasets_answer if d["code"] == "wdi")
    return wdi["name"], wdi["indicators"]


def poll(stop: threading.Event, fn, pause: float = 0.02) -> list:
    out = []
    while not stop.is_set():
        try:
            out.append(fn())
        except Exception as exc:  # recorded, judged by the test
            out.append(exc)
        time.sleep(pause)
    return out


# --------------------------------------------------------------------------- tests
def test_store_outage_serves_cache_reports_degraded_and_recovers(azurite, published):
    host = published(version_a())
    ok = host.wait_health(lambda h: h["status"] == "ok", what="first load")
    version = ok["version"]
    expected = host.http.get("/datasets").json()

    stop = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        flows = [pool.submit(poll, stop, lambda: host.http.get("/datasets")) for _ in range(3)]
        try:
            time.sleep(1.0)
            azurite.stop()
            try:
                degraded = host.wait_health(lambda h: h["status"] == "degraded",
                                            what="degraded while storage is down")
                assert degraded["version"] == version, "the cached copy must stay in service"
                assert degraded["last_error"] and "cannot" in degraded["last_error"]
                assert degraded["rows"] == ok["rows"]
                time.sleep(2.5)  # several refresh periods without storage
                assert host.health()["status"] == "degraded"
            finally:
                azurite.start()
            recovered = host.wait_health(lambda h: h["status"] == "ok", what="automatic recovery")
            time.sleep(0.5)
        finally:
            stop.set()
        answers = [a for f in flows for a in f.result()]

    assert recovered["version"] == version and recovered["last_error"] is None
    failures = [a for a in answers if isinstance(a, Exception) or a.status_code != 200]
    assert not failures, f"{len(failures)} of {len(answers)} requests failed during the outage: {failures[:3]}"
    assert len(answers) > 50
    assert all(a.json() == expected for a in answers)
    host.assert_alive_and_clean()


@pytest.mark.parametrize("file,content,problem", [
    ("indicatorData.csv", b"Country Code,Indicator Code,2000\nFJI,wdi-X,1\nFJI,wdi-X,2\n", "share a key"),
    ("indicatorData.csv", b"Country Code,Indicator Code,2000,2001\nFJI,wdi-SP.URB.TOTL,1,not-a-number\n",
     "unparseable number"),
    ("indicatorMeta.csv", b"\x00\xff\xfe garbage \x00\n\x01,\x02\n", "indicatorMeta.csv"),
    ("datasetMeta.csv", b"Name\nwdi\n", "missing column"),
], ids=["duplicate-keys", "bad-number", "binary-garbage", "missing-column"])
def test_corrupt_file_keeps_the_good_version_and_reports_it(published, file, content, problem):
    host = published(version_a())
    good = host.wait_health(lambda h: h["status"] == "ok", what="first load")
    expected = host.http.get("/datasets").json()

    host.publish({file: content})
    bad = host.wait_health(lambda h: h["status"] == "degraded", what="the corrupt file to be reported")
    assert bad["version"] == good["version"], "a corrupt publish must not replace the good copy"
    assert file in bad["last_error"] and problem in bad["last_error"], bad["last_error"]
    assert bad["indicators"] == good["indicators"] and bad["rows"] == good["rows"]
    for _ in range(20):  # the service goes on answering from the good copy, across refreshes
        resp = host.http.get("/datasets")
        assert resp.status_code == 200 and resp.json() == expected
        time.sleep(0.1)
    assert host.health()["last_error"] == bad["last_error"]

    host.publish({file: version_a()[file]})  # the operator fixes the file
    fixed = host.wait_health(lambda h: h["status"] == "ok", what="the fixed file to be loaded")
    assert fixed["last_error"] is None and fixed["indicators"] == good["indicators"]
    host.assert_alive_and_clean()


def test_new_version_is_picked_up_without_restart_and_never_mixed(published):
    host = published(version_a())
    a = host.wait_health(lambda h: h["status"] == "ok", what="first load")
    assert signature(host.http.get("/datasets").json()) == SIGNATURE_A
    pid = host.proc.pid

    def bracketed():
        """/health, a data answer, /health: when both /health calls agree, the answer is that version's."""
        before = host.health()
        answer = signature(host.http.get("/datasets").json())
        after = host.health()
        return before, answer, after

    stop = threading.Event()
    with ThreadPoolExecutor(4) as pool:
        watchers = [pool.submit(poll, stop, bracketed, 0.0) for _ in range(2)]
        readers = [pool.submit(poll, stop, lambda: signature(host.http.get("/datasets").json()), 0.0)]
        try:
            time.sleep(1.0)
            # A publisher uploading file by file, with pauses shorter than the refresh period between them.
            host.publish(version_b(), pause=0.6)
            b = host.wait_health(lambda h: h["version"] not in (None, a["version"]), what="the new version")
            time.sleep(2.5)
        finally:
            stop.set()
        brackets = [x for w in watchers for x in w.result()]
        answers = [x for r in readers for x in r.result()] + [x[1] for x in brackets if not isinstance(x, Exception)]

    errors = [x for x in brackets + answers if isinstance(x, Exception)]
    assert not errors, errors[:3]
    assert host.proc.pid == pid and host.proc.poll() is None, "picked up without a restart"
    assert b["status"] == "ok" and b["indicators"] == SIGNATURE_B[1]
    assert set(answers) <= {SIGNATURE_A, SIGNATURE_B}, f"mixed versions seen: {set(answers) - {SIGNATURE_A, SIGNATURE_B}}"
    assert SIGNATURE_A in answers and SIGNATURE_B in answers
    by_version = {a["version"]: SIGNATURE_A, b["version"]: SIGNATURE_B}
    for before, answer, after in brackets:
        assert before["version"] in by_version and after["version"] in by_version, (before, after)
        if before["version"] == after["version"]:
            assert answer == by_version[before["version"]], (before["version"], answer)
    assert signature(host.http.get("/datasets").json()) == SIGNATURE_B
    host.assert_alive_and_clean()


# --------------------------------------------------------------------------- concurrent predictions
VOLATILE = ("seconds", "time", "cached", "elapsed", "duration", "request_id", "loaded_at")


def stable(value):
    """The answer without timing fields (which differ between identical computations)."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if not any(t in k.lower() for t in VOLATILE)}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def prediction_requests(http: httpx.Client, n: int = 6) -> tuple[str, list[dict], set[str]]:
    """Distinct, valid prediction requests on the current data, from the look-up endpoints."""
    paths = http.get("/openapi.json").json()["paths"]
    if "/twolvlImp/predict" in paths:
        year = "2015"
        targets = list(http.get("/twolvlImp/targets", params={"target_year": year, "dataset": "wdi"}).json())
        bodies, used = [], set()
        for target in targets[:: max(1, len(targets) // n)][:n]:
            preds = http.post("/twolvlImp/predictors", json={"target_year": year, "dataset": "wdi", "target": target,
                                                             "scheme": "MANUAL"}).json()
            manual = [p for p in preds if p != target][:2]
            for trees in (10, 12):  # distinct requests, so the reload meets real computations, not cache hits
                bodies.append({"target": target, "target_year": year, "interpolator": "KNNImputer",
                               "scheme": "MANUAL", "estimators": trees, "model": "rfr", "interval": "quantile",
                               "dataset": "wdi", "manual_predictors": manual})
            used.update([target, *manual])
        return "/twolvlImp/predict", bodies, used
    targets = http.get("/statimpute/targets").json()
    bodies, used = [], set()
    for t in targets[:: max(1, len(targets) // n)][:n]:
        countries = http.get("/statimpute/countries", params={"target": t["code"]}).json()
        good = [c for c in countries if c["observed"] >= 4 and c["missing"] >= 1]
        if good:
            bodies.append({"target": t["code"], "country": good[0]["code"], "method": "linear"})
            used.add(t["code"])
    return "/statimpute/impute", bodies, used


def test_concurrent_predictions_during_a_reload_never_fail_or_mix(azurite, published):
    host = published(version_a())
    a = host.wait_health(lambda h: h["status"] == "ok", what="first load")
    path, bodies, used = prediction_requests(host.http, n=12)
    # Keep the requests the data can answer (a listed target may have no missing SIDS that year: a 422).
    answered = [(b, host.http.post(path, json=b)) for b in bodies]
    bodies = [b for b, resp in answered if resp.status_code == 200]
    before = [stable(resp.json()) for _, resp in answered if resp.status_code == 200]
    assert len(bodies) >= 8, "not enough prediction requests to exercise a reload"

    stop = threading.Event()
    results: list[tuple[int, object]] = []
    lock = threading.Lock()

    def client(k: int):
        with httpx.Client(base_url=host.base, timeout=120) as c:
            i = k
            while not stop.is_set():
                body = bodies[i % len(bodies)]
                try:
                    resp = c.post(path, json=body)
                    out = (resp.status_code, stable(resp.json()))
                except Exception as exc:
                    out = (-1, repr(exc))
                with lock:
                    results.append((i % len(bodies), out))
                i += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(12)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        host.publish(version_b(keep=used))
        b = host.wait_health(lambda h: h["version"] not in (None, a["version"]), what="reload under load")
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    after = [stable(host.http.post(path, json=body).json()) for body in bodies]

    assert b["status"] == "ok"
    assert sum(x != y for x, y in zip(before, after)) >= len(bodies) - 1, "version B should change the answers"
    failed = [(i, out) for i, out in results if out[0] != 200]
    assert not failed, f"{len(failed)} of {len(results)} predictions failed during the reload: {failed[:2]}"
    mixed = [(i, out) for i, out in results if out[1] not in (before[i], after[i])]
    assert not mixed, f"{len(mixed)} answers match neither version, e.g. {json.dumps(mixed[0])[:500]}"
    olds = sum(out[1] == before[i] != after[i] for i, out in results)
    news = sum(out[1] == after[i] != before[i] for i, out in results)
    assert olds and news, f"the reload did not happen during the load (old {olds}, new {news})"
    assert len(results) >= 100
    host.assert_alive_and_clean()
