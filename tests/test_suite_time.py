"""bench/suite_time.py: worker time by area from pytest's JUnit XML, and the ratio over the tests two runs share."""

from __future__ import annotations

from pathlib import Path

from bench.suite_time import by_area, main, report, case_times


def junit(path: Path, cases: dict[tuple[str, str], float]) -> Path:
    rows = "".join(f'<testcase classname="{c}" name="{n}" time="{t}"/>' for (c, n), t in cases.items())
    path.write_text(f'<testsuites><testsuite name="pytest">{rows}</testsuite></testsuites>')
    return path


BEFORE = {("tests.fleet.test_a", "t1"): 100.0, ("tests.fleet.test_b", "t2"): 20.0,
          ("tests.runbooks.test_c", "t3"): 60.0, ("tests.runbooks.test_c", "gone"): 30.0, ("tests.test_cli", "t5"): 1.0}
AFTER = {("tests.fleet.test_a", "t1"): 130.0, ("tests.fleet.test_b", "t2"): 26.0,
         ("tests.runbooks.test_c", "t3"): 30.0, ("tests.test_cli", "t5"): 1.3, ("tests.awx.test_d", "new"): 12.0}


def test_areas_sum_each_folder_and_top_level_files_stand_alone(tmp_path):
    times = case_times(junit(tmp_path / "a.xml", AFTER))
    assert times == AFTER
    assert by_area(times) == {"tests.fleet": 156.0, "tests.runbooks": 30.0, "tests.test_cli": 1.3, "tests.awx": 12.0}


def test_the_comparison_counts_only_the_tests_both_runs_have(tmp_path):
    text = report(AFTER, BEFORE, slowest=2)
    # shared: t1, t2, t3, t5: 187.3 s after, 181 s before
    assert "4 in both, their time after / before: 1.03" in text
    assert "| tests.fleet | 2.6 | 2.0 | 1.30 |" in text  # a slower day: the same ratio everywhere ...
    assert "| tests.runbooks | 0.5 | 1.5 | 0.50 |" in text  # ... a cut: well below it (gone not counted)
    assert "| tests.awx | 0.2 | 0.0 | - |" in text
    assert text.endswith("| tests.fleet.test_a::t1 | 130.0 |\n| tests.runbooks.test_c::t3 | 30.0 |")


def test_the_command_prints_one_run_alone(tmp_path, capsys):
    assert main([str(junit(tmp_path / "a.xml", AFTER)), "--slowest", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("worker time: 3.3 min, 5 tests") and "| tests.fleet | 2.6 |" in out
    assert out.rstrip().endswith("| tests.fleet.test_a::t1 | 130.0 |")
