"""Where `make test`'s time goes, from pytest's JUnit XML: worker time by area (`tests/<area>`, or the file for
tests at the top of tests/), the slowest tests, and, given the XML of an earlier run, each area's time in both
runs with the ratio over the tests both ran. A machine slower on the day shows as about one ratio for every area
(and for the tests nobody changed); a cut shows as an area well below it. Runs on different days compare only
that way: `make test`'s wall time alone does not tell a cut from the machine.

    PYTEST_ADDOPTS=--junitxml=/tmp/after.xml make test
    python -m bench.suite_time /tmp/after.xml --before /tmp/before.xml
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

Times = dict[tuple[str, str], float]  # (classname, name) -> seconds


def case_times(junit: Path) -> Times:
    """Each test case's seconds (setup, call and teardown, as pytest writes them)."""
    root = ET.parse(junit).getroot()
    return {(case.get("classname", ""), case.get("name", "")): float(case.get("time", 0))
            for case in root.iter("testcase")}


def area(classname: str) -> str:
    """tests.fleet.test_scale_out -> tests.fleet; tests.test_cli -> tests.test_cli."""
    parts = classname.split(".")
    return ".".join(parts[:2])


def by_area(times: Times, only: set[tuple[str, str]] | None = None) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for key, seconds in times.items():
        if only is None or key in only:
            totals[area(key[0])] += seconds
    return dict(totals)


def report(after: Times, before: Times | None = None, slowest: int = 15) -> str:
    """A Markdown report: areas (minutes), then the slowest tests (seconds)."""
    lines = [f"worker time: {sum(after.values()) / 60:.1f} min, {len(after)} tests", ""]
    areas = by_area(after)
    if before is None:
        lines += ["| area | min |", "|---|---|"]
        lines += [f"| {name} | {seconds / 60:.1f} |" for name, seconds in sorted(areas.items(), key=lambda i: -i[1])]
    else:
        shared, before_areas = set(after) & set(before), by_area(before)
        now, then = by_area(after, shared), by_area(before, shared)
        total_now, total_then = sum(now.values()), sum(then.values())
        ratio = f"{total_now / total_then:.2f}" if total_then else "-"
        lines += [f"before: {sum(before.values()) / 60:.1f} min, {len(before)} tests; {len(shared)} in both, "
                  f"their time after / before: {ratio}", "",
                  "| area | min after | min before | after / before, tests in both |", "|---|---|---|---|"]
        for name in sorted(set(areas) | set(before_areas), key=lambda n: -areas.get(n, 0)):
            ratio = f"{now[name] / then[name]:.2f}" if then.get(name) else "-"
            lines.append(f"| {name} | {areas.get(name, 0) / 60:.1f} | {before_areas.get(name, 0) / 60:.1f} "
                         f"| {ratio} |")
    lines += ["", "| slowest tests | s |", "|---|---|"]
    for (classname, name), seconds in sorted(after.items(), key=lambda i: -i[1])[:slowest]:
        lines.append(f"| {classname}::{name} | {seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", type=Path, help="pytest --junitxml of the run")
    parser.add_argument("--before", type=Path, help="the --junitxml of an earlier run, to compare with")
    parser.add_argument("--slowest", type=int, default=15)
    args = parser.parse_args(argv)
    print(report(case_times(args.junit), case_times(args.before) if args.before else None, args.slowest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
