"""REPORT.md building: table rows, ratios against the loop and the seed, target verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import markdown, newest, rows, sink_rows, table, targets


def _run(tool: str, rate: float | None, **extra: Any) -> dict[str, Any]:
    return {
        "tool": tool,
        "label": tool,
        "hosts": 1000,
        "rounds": 1,
        "results_per_s": rate,
        "wall_s": None if rate is None else 1000 / rate,
        "latency_ms": {"p50": 100.0, "p99": 900.0},
        "failures": {},
        "complete": True,
        "missing": 0,
        "duplicates": 0,
        "outcome": "ok" if rate is not None else "timeout",
        "processes": {},
    } | extra


def _doc(name: str, *runs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"scenario": name, "title": name, "params": {"timeout_s": 5.0}, "runs": list(runs)}


def test_rows_ratios_against_loop_and_seed() -> None:
    doc = _doc(
        "fanout-1000",
        _run("fleetrun", 300.0, processes={"collector": {"cpu_s": 2.0, "peak_rss_mb": 80.0}}),
        _run("plainloop", 400.0),
        _run("seed", 100.0),
    )
    table_rows = rows(doc)
    assert [r[1] for r in table_rows] == ["fleetrun", "plainloop", "seed"]
    assert table_rows[0][10:] == ["0.75×", "3.00×"]
    assert table_rows[1][10:] == ["1.00×", "4.00×"]
    assert table_rows[0][6] == "2.0 (coll 2.0)"
    assert table_rows[0][7] == "coll 80"


def test_rows_mark_timeouts_and_incomplete_runs() -> None:
    doc = _doc("hang-1000", _run("seed", None, complete=False, missing=50, duplicates=0))
    (row,) = rows(doc)
    assert row[3] == "–"
    assert "**timeout**" in row[8]
    assert row[9] == "no (50 missing, 0 dup)"


def test_healthy_rows_compare_with_the_healthy_loop() -> None:
    doc = _doc("hang-1000", _run("fleetrun@healthy", 800.0), _run("plainloop@healthy", 1600.0))
    assert rows(doc)[0][10:] == ["0.50×", "–"]


def test_table_has_one_line_per_row_plus_header() -> None:
    text = table([["a|b", *["x"] * 11]])
    assert text.count("\n") == 2
    assert "a\\|b" in text


def test_targets() -> None:
    docs = {
        "warm-500x50": _doc("warm-500x50", _run("fleetrun", 900.0), _run("plainloop", 1000.0)),
        "fanout-1000": _doc("fanout-1000", _run("fleetrun", 300.0), _run("seed", 90.0)),
        "hang-1000": _doc(
            "hang-1000",
            _run("fleetrun@healthy", 1000 / 1.2),
            _run("fleetrun", 1000 / 5.8),
        ),
        "huge-1gib": _doc(
            "huge-1gib", _run("fleetrun", 0.1, processes={"collector": {"rss_growth_mb": 2.0}})
        ),
    }
    verdicts = {t.split(":")[0]: v for t, _, v in targets(docs)}
    assert verdicts["warm pool"] == "met"
    assert verdicts["fanout-1000"] == "met"
    assert verdicts["5% dead/hanging (warm pool)"] == "**missed**"
    assert verdicts["collector RSS growth ≤ 32 MB for a 1 GiB output"] == "met"


def test_sink_rows_from_bench_sink_json() -> None:
    doc = {
        "rows": 200000,
        "sink": {"seconds_from_start": 4.6, "rows_per_s_from_start": 43000, "sink_cpu_s": 4.1},
        "naive": {"rows": 5000, "seconds": 1.5, "rows_per_s": 3300},
    }
    sink, naive = sink_rows(doc)
    assert sink[4] == "43,000"
    assert sink[11] == "13.03×"
    assert naive[11] == "1.00×"
    assert sink_rows({}) == []


def test_newest_picks_the_latest_date(tmp_path: Path) -> None:
    for day in ("2026-11-24", "2026-11-25"):
        (tmp_path / f"{day}-fanout-100.json").write_text(json.dumps({"d": day}))
    (tmp_path / "2026-11-26-other.json").write_text("{}")
    assert newest(tmp_path, ["fanout-100"]) == {
        "fanout-100": tmp_path / "2026-11-25-fanout-100.json"
    }


def test_markdown_mentions_every_scenario_and_micro() -> None:
    docs = {"fanout-100": _doc("fanout-100", _run("fleetrun", 100.0)) | {"machine": {"cpus": 2}}}
    text = markdown(docs, None, {"codec": "# Codec\n\nfast"}, [Path("plots/throughput.png")])
    assert "fanout-100" in text
    assert "## Micro-benchmark: codec" in text
    assert "### Codec" in text
    assert "![throughput](plots/throughput.png)" in text
