"""Run the Locust scenarios headless against a locally started service and print the figures.

    .venv/bin/python load/run_load.py                      # everything: 1 and 2 workers, both scenarios
    .venv/bin/python load/run_load.py --workers 1 --scenario simple --variant cached

For each worker count it starts the local host (``python -m local_host --workers N``)
on 127.0.0.1 with the embedded dataset, waits until /health is ok, makes one request of
each kind so every worker process has loaded the dataset (not the measured requests),
then runs Locust headless, bounded both in requests and in time, and stops the host.

Runs:
  simple/cached    the old test: 20 users, 400 simple requests, all the same request
  simple/uncached  the same, but 400 different (target, year, predictor) requests
  mixed/uncached   20 users for --mixed-seconds: look-ups, varied simple predictions, a few AFS

Printed per run: requests, error rate, throughput (requests per second and per minute,
and the ratio to the old service's 34.6 per minute), p50/p95/p99 latency, and how the
machine's CPU was shared during the run between the service, Locust itself and everything
else running on the machine (the figures are only as good as that last share is small).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "scripts"))
import requests_pool  # noqa: E402  (beside this file)
from processes import free_port, stop_process  # noqa: E402  (scripts/processes.py)
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
OLD_PER_MINUTE = 34.6
OLD_ERROR_RATE = 0.30


def get(url: str, timeout: float = 60) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def start_host(workers: int, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = dict(os.environ, **env_extra)
    log = Path(tempfile.mkstemp(prefix=f"load-host-{workers}w-", suffix=".log")[1])
    proc = subprocess.Popen([sys.executable, "-m", "local_host", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers), "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the local host exited: {log.read_text()[-2000:]}")
        try:
            status, body = get(base + "/health", timeout=5)
            if status == 200 and json.loads(body)["status"] == "ok":
                return proc, base, log
        except OSError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"the local host did not become healthy: {log.read_text()[-2000:]}")


def warm_up(base: str, workers: int) -> None:
    """Load the dataset in every worker process: many parallel look-ups spread over the processes."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_):
        return get(base + "/twolvlImp/target_years")[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(16 * workers)))
    if any(s != 200 for s in statuses):
        raise RuntimeError(f"warm-up failed: {statuses}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest-rank
    return float(ordered[rank])


def load_average() -> float:
    return os.getloadavg()[0]


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and all its descendants (the host and its workers)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def run_locust(base: str, user_class: str, variant: str, users: int, requests: int, seconds: int,
               out_dir: Path, label: str, host_pid: int, pool_file: Path) -> dict:
    timing_file = out_dir / f"{label}_timing.json"
    env = dict(os.environ, LOAD_VARIANT=variant, LOAD_REQUESTS=str(requests), LOAD_TIMING_FILE=str(timing_file),
               LOAD_POOL_FILE=str(pool_file))
    cmd = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE), "--headless", "--host", base,
           "-u", str(users), "-r", str(users), "--run-time", f"{seconds}s", "--stop-timeout", "30",
           "--only-summary", "--loglevel", "WARNING", user_class]
    import resource

    busy0, host0 = machine_busy_seconds(), tree_cpu_seconds(host_pid)
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=seconds + 300)
    wall = time.time() - started
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    locust_cpu = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    host_cpu = tree_cpu_seconds(host_pid) - host0
    others = max(0.0, machine_busy_seconds() - busy0 - locust_cpu - host_cpu)
    cores = os.cpu_count() or 1
    (out_dir / f"{label}_locust.log").write_text(run.stdout + run.stderr)
    if not timing_file.exists():
        raise RuntimeError(f"locust recorded nothing:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    timing = json.loads(timing_file.read_text())
    count = len(timing["times_ms"])
    if not count:
        raise RuntimeError(f"locust sent no requests:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    failures = timing["failures"]
    per_second = count / max(timing["last_end"] - timing["first_start"], 1e-9)
    result = {
        "run": label, "requests": count, "failures": failures, "error_rate": failures / count,
        "per_second": per_second, "per_minute": per_second * 60, "vs_old": per_second * 60 / OLD_PER_MINUTE,
        "p50_ms": percentile(timing["times_ms"], 50), "p95_ms": percentile(timing["times_ms"], 95),
        "p99_ms": percentile(timing["times_ms"], 99), "wall_seconds": round(wall, 1),
        # Share of the machine's CPU used during the run by the service, by Locust, and by everything else.
        "cpu_service": host_cpu / (wall * cores), "cpu_locust": locust_cpu / (wall * cores),
        "cpu_others": others / (wall * cores),
        "by_name": {name: {"requests": len(e["times_ms"]), "failures": e["failures"],
                           "p50_ms": percentile(e["times_ms"], 50), "p95_ms": percentile(e["times_ms"], 95)}
                    for name, e in timing["by_name"].items()},
    }
    if timing["errors"]:
        result["failure_examples"] = "\n".join(timing["errors"])
    return result


def cpu_shares(r: dict) -> str:
    return f"{100 * r['cpu_service']:.0f}% / {100 * r['cpu_locust']:.0f}% / {100 * r['cpu_others']:.0f}%"


def print_table(results: list[dict]) -> None:
    head = (f"{'run':34} {'requests':>8} {'errors':>7} {'req/s':>7} {'req/min':>8} {'x old':>6} "
            f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'CPU service/locust/others':>26}")
    print(head)
    print("-" * len(head))
    print(f"{'old service (seed README, AKS)':34} {400:>8} {'30%':>7} {OLD_PER_MINUTE / 60:>7.2f} "
          f"{OLD_PER_MINUTE:>8.1f} {1:>6.1f} {'':>7} {'':>7} {'':>7} {'':>5}")
    for r in results:
        print(f"{r['run']:34} {r['requests']:>8} {100 * r['error_rate']:>6.1f}% {r['per_second']:>7.1f} "
              f"{r['per_minute']:>8.0f} {r['vs_old']:>6.0f} {r['p50_ms']:>7.0f} {r['p95_ms']:>7.0f} "
              f"{r['p99_ms']:>7.0f} {cpu_shares(r):>26}")


def markdown_table(results: list[dict]) -> str:
    lines = ["| run | requests | errors | req/s | req/min | x old | p50 ms | p95 ms | p99 ms "
             "| CPU: service / Locust / others |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| old service (seed README; AKS, autoscaling to 6 pods) | 400 | 30% | {OLD_PER_MINUTE / 60:.2f} | "
             f"{OLD_PER_MINUTE} | 1 | | | | |"]
    for r in results:
        lines.append(f"| {r['run']} | {r['requests']} | {100 * r['error_rate']:.1f}% | {r['per_second']:.1f} | "
                     f"{r['per_minute']:.0f} | {r['vs_old']:.0f} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | "
                     f"{r['p99_ms']:.0f} | {cpu_shares(r)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker processes (default: 1 2)")
    parser.add_argument("--scenario", nargs="+", choices=["simple", "mixed"], default=["simple", "mixed"])
    parser.add_argument("--variant", nargs="+", choices=["cached", "uncached"], default=["cached", "uncached"],
                        help="simple scenario variants (the mixed scenario always varies its predictions)")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="requests of the simple scenario")
    parser.add_argument("--simple-max-seconds", type=int, default=180, help="time bound of a simple run")
    parser.add_argument("--mixed-seconds", type=int, default=60, help="duration of a mixed run")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--markdown", action="store_true", help="also print the table in Markdown")
    args = parser.parse_args(argv)

    out_dir = Path(tempfile.mkdtemp(prefix="load-"))
    results = []
    for workers in args.workers:
        proc, base, log = start_host(workers, {})
        try:
            warm_up(base, workers)
            # The requests to send, from the service's own look-ups: built before, not during, the runs.
            pool_file = out_dir / f"pool-{workers}.json"
            requests_pool.save(requests_pool.build_pool(base), str(pool_file))
            plan = []
            if "simple" in args.scenario:
                plan += [("SimpleUser", v, args.requests, args.simple_max_seconds, f"simple/{v}")
                         for v in args.variant]
            if "mixed" in args.scenario:
                plan.append(("MixedUser", "uncached", 0, args.mixed_seconds, "mixed/uncached"))
            for user_class, variant, requests, seconds, name in plan:
                label = f"{name} {workers} worker{'s' if workers > 1 else ''}"
                before = load_average()
                print(f"running {label} (load average {before:.1f}) ...", flush=True)
                result = run_locust(base, user_class, variant, args.users, requests, seconds, out_dir,
                                    label.replace("/", "-").replace(" ", "_"), proc.pid, pool_file)
                result.update(run=label, workers=workers, load_before=before)
                results.append(result)
                if proc.poll() is not None:
                    raise RuntimeError(f"the local host died during {label}: {log.read_text()[-2000:]}")
        finally:
            stop_process(proc, grace=20)
    print()
    print_table(results)
    print(f"\n(Locust output, request pools and host logs: {out_dir}, /tmp/load-host-*.log)")
    if args.markdown:
        print()
        print(markdown_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    bad = [r["run"] for r in results if r["failures"]]
    if bad:
        print(f"\nERRORS in: {', '.join(bad)}")
        for r in results:
            if r.get("failure_examples"):
                print(r["failure_examples"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
