"""The pure parts of bench.orchestrated: task-tree RSS accounting and the result's shape."""

from __future__ import annotations

import resource
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.orchestrated import (
    MIB,
    REPO_ROOT,
    TASK_RSS_LOG_ENV,
    ProcInfo,
    RssSampler,
    ServingWatcher,
    aggregate,
    bench_plugins_folder,
    deploy_started,
    execute_seconds,
    read_peaks,
    read_task_cpu,
    run_overhead,
    task_facts,
    task_tree_rss,
)

TI_A = "0198c1d2-0000-7000-8000-00000000000a"
TI_B = "0198c1d2-0000-7000-8000-00000000000b"


def test_task_tree_rss_sums_each_task_process_and_its_descendants_only() -> None:
    processes = [
        ProcInfo(1, 0, "airflow scheduler", 500),
        ProcInfo(10, 1, "airflow worker -- LocalExecutor: <idle>", 300),  # the supervisor: not a task
        ProcInfo(11, 10, f"airflow worker -- {TI_A}", 100),
        ProcInfo(12, 11, "python -m include.ct_serving check", 40),  # a child of the task
        ProcInfo(13, 12, "grandchild", 2),
        ProcInfo(20, 1, "airflow worker -- LocalExecutor: ct_x/train", 300),
        ProcInfo(21, 20, f"airflow worker -- {TI_B}", 70),
        ProcInfo(30, 1, "unrelated", 9999),
    ]
    assert task_tree_rss(processes) == {TI_A: 142, TI_B: 70}


def test_task_tree_rss_survives_a_pid_cycle() -> None:
    processes = [ProcInfo(5, 6, f"airflow worker -- {TI_A}", 10), ProcInfo(6, 5, "child", 1)]
    assert task_tree_rss(processes) == {TI_A: 11}


def test_sampler_keeps_the_peak_and_first_sighting() -> None:
    sampler = RssSampler()
    sampler.record({TI_A: 10}, 100.0)
    sampler.record({TI_A: 30, TI_B: 5}, 100.2)
    sampler.record({TI_A: 20}, 100.4)
    assert sampler.peaks == {TI_A: 30, TI_B: 5}
    assert sampler.first_seen == {TI_A: 100.0, TI_B: 100.2}


def test_reported_peaks_fill_in_tasks_the_sampler_missed_and_never_lower_a_peak() -> None:
    sampler = RssSampler()
    sampler.record({TI_A: 300}, 100.0)
    sampler.fold_peaks({TI_A: 200, TI_B: 50})
    assert sampler.peaks == {TI_A: 300, TI_B: 50}
    assert sampler.first_seen == {TI_A: 100.0}  # a report is not a sighting


def test_each_task_process_reports_its_own_peak_through_the_bench_listener(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from bench import task_rss_plugin

    assert task_rss_plugin.LOG_ENV == TASK_RSS_LOG_ENV
    log = tmp_path / "task_rss.jsonl"
    monkeypatch.setenv(TASK_RSS_LOG_ENV, str(log))

    class TaskInstance:
        id = TI_A

    task_rss_plugin.on_task_instance_success(previous_state=None, task_instance=TaskInstance())
    task_rss_plugin.on_task_instance_failed(previous_state=None, task_instance=TaskInstance(), error="x")
    log.write_text(log.read_text() + "not json\n")  # a torn line is skipped, not fatal
    peaks = read_peaks(log)
    assert set(peaks) == {TI_A}
    assert 0 < peaks[TI_A] <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert read_peaks(tmp_path / "missing.jsonl") == {}
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = read_task_cpu(log)[TI_A]  # this process's accounting so far, as a task's at its end
    assert 0 < cpu["user_s"] <= own.ru_utime and 0 <= cpu["system_s"] <= own.ru_stime
    assert 0 < cpu["minor_faults"] <= own.ru_minflt
    assert read_task_cpu(tmp_path / "missing.jsonl") == {}
    assert task_rss_plugin.BenchTaskRssPlugin.listeners == [task_rss_plugin]


def test_bench_plugins_folder_links_the_shipped_plugins_and_the_listener(tmp_path: Path) -> None:
    folder = bench_plugins_folder(tmp_path)
    assert bench_plugins_folder(tmp_path) == folder  # a second call finds the links in place
    names = {entry.name for entry in folder.iterdir()}
    shipped = {e.name for e in (REPO_ROOT / "plugins").iterdir() if e.name != "__pycache__"}
    assert names == shipped | {"task_rss_plugin.py"}
    assert (folder / "ct_plugin.py").resolve() == (REPO_ROOT / "plugins" / "ct_plugin.py").resolve()


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _run(rows: int, repeat: int, served: float | None) -> dict[str, Any]:
    sampler = RssSampler()
    sampler.record({TI_A: 200 * MIB, TI_B: 300 * MIB}, T0.timestamp() + 1.5)
    rows_ = [
        ("extract", TI_A, "success", 1, _at(2), _at(2.5), _at(3), _at(5)),
        ("train", TI_B, "success", 1, _at(6), _at(6.2), _at(7), _at(17)),
    ]
    cpu = {TI_B: {"user_s": 14.0, "system_s": 0.5 + repeat, "minor_faults": 1e5, "involuntary_switches": 2e3}}
    tasks = task_facts(rows_, sampler, cpu=cpu)
    overhead = run_overhead(
        T0.timestamp(),
        T0.timestamp() + served if served is not None else None,
        tasks,
        {"event_at": _at(1), "run_created": _at(1.5)},
    )
    return {
        "rows": rows,
        "repeat": repeat,
        "tasks": tasks,
        "overhead": overhead,
        "arrival_to_serving_s": served,
    }


def test_task_facts_and_overhead_of_one_run() -> None:
    run = _run(10_000, 1, 20.0)
    extract = run["tasks"]["extract"]
    assert extract["seconds"] == 2.0
    assert extract["scheduler_to_task_s"] == 1.0
    assert extract["queued_to_start_s"] == 0.5
    assert extract["process_seen_to_start_s"] == 1.5
    assert extract["peak_rss_mib"] == 200.0
    assert extract["system_s"] is None  # its process reported no accounting
    assert run["tasks"]["train"]["system_s"] == 1.5
    overhead = run["overhead"]
    assert overhead["tasks_total_s"] == 12.0
    assert overhead["overhead_s"] == 8.0
    assert overhead["arrival_to_event_s"] == 1.0
    assert overhead["event_to_run_s"] == 0.5
    assert overhead["run_to_first_task_s"] == 1.5
    assert overhead["between_tasks_s"] == 2.0
    assert overhead["upstream_end_to_scheduled_s"] == 1.0
    assert overhead["orchestration_s"] == 5.0
    assert overhead["last_task_to_serving_s"] == 3.0


def test_aggregate_groups_by_size_and_summarizes_successful_runs_only() -> None:
    runs = [_run(10_000, 1, 20.0), _run(10_000, 2, 22.0), _run(10_000, 3, None), _run(100_000, 1, 40.0)]
    result = aggregate(runs)
    assert result["pipeline"] == "churn"
    assert list(result["sizes"]) == ["10000", "100000"]
    small = result["sizes"]["10000"]
    assert (small["successful_runs"], small["failed_runs"]) == (2, 1)
    assert small["arrival_to_serving_s"] == {"median": 21.0, "min": 20.0, "max": 22.0, "runs": [20.0, 22.0]}
    assert small["overhead_s"]["runs"] == [8.0, 10.0]
    assert set(small["stages"]) == {"extract", "train"}
    train = small["stages"]["train"]
    assert train["seconds"]["median"] == 10.0
    assert train["peak_rss_mib"]["max"] == 300.0
    assert train["scheduler_to_task_s"]["median"] == 1.0
    assert train["system_s"]["runs"] == [1.5, 2.5]  # the failed third run's is left out
    assert small["stages"]["extract"]["user_s"] is None
    assert len(small["runs"]) == 3
    assert result["sizes"]["100000"]["arrival_to_serving_s"]["runs"] == [40.0]


def test_aggregate_of_only_failed_runs_has_no_summaries() -> None:
    result = aggregate([_run(10_000, 1, None)])
    assert result["sizes"]["10000"]["arrival_to_serving_s"] is None
    assert result["sizes"]["10000"]["stages"] == {}


def test_execute_seconds_spans_pre_execute_end_to_post_execute_start() -> None:
    lines = [
        '{"timestamp":"2026-01-01T00:00:00.000Z","event":"::group::Pre Execute"}',
        '{"timestamp":"2026-01-01T00:00:01.500Z","event":"::endgroup::"}',
        "not json",
        '{"timestamp":"2026-01-01T00:00:02.000Z","event":"training"}',
        '{"timestamp":"2026-01-01T00:00:05.750Z","event":"::group::Post Execute"}',
        '{"timestamp":"2026-01-01T00:00:05.800Z","event":"::endgroup::"}',
    ]
    assert execute_seconds(lines) == 4.25
    assert execute_seconds(lines[:3]) is None


def test_deploy_started_only_for_a_new_run_with_a_deploy_task_log(tmp_path: Path) -> None:
    logs = tmp_path / "dag_id=ct_bench_churn"
    assert not deploy_started(logs, set())  # no run has logged anything yet
    (logs / "run_id=old" / "task_id=deploy").mkdir(parents=True)
    (logs / "run_id=new" / "task_id=register").mkdir(parents=True)
    assert not deploy_started(logs, {"old"})
    (logs / "run_id=new" / "task_id=deploy").mkdir()
    assert deploy_started(logs, {"old"})


def test_serving_watcher_sends_no_request_until_armed() -> None:
    ready = False
    watcher = ServingWatcher(url="http://127.0.0.1:9/v1/models/x", armed=lambda: ready)
    watcher.poll()
    watcher.poll()
    assert watcher.requests == 0
    ready = True
    watcher.poll()
    ready = False  # once armed it stays armed
    watcher.poll()
    assert watcher.requests == 2
    assert watcher.first_served == {}  # nothing answered on the discard port
