"""aegis.rag.report_write (the report role's writer, an action plugin): both files written whole, in the
controller's process, never a change; a bad name or an unwritable directory fails with a clear message."""

from __future__ import annotations

import json


def write_task(directory, name="runbook_x", stamp="20261206T031500Z", **extra) -> dict:
    return {"name": "Write", "aegis.rag.report_write": {
        "dir": str(directory), "name": name, "stamp": stamp, "markdown": "# Report\n\n| a | b |",
        "document": {"status": "ok", "hosts": {"h": {"summary": "fine", "data": {"n": 1}}}}, **extra}}


def test_both_files_are_written_and_nothing_is_changed(run_tasks, tmp_path):
    reports = tmp_path / "deep" / "reports"
    out = run_tasks([write_task(reports)])
    assert out.rc == 0, out.describe()
    result = out.result("Write")
    assert result["changed"] is False
    base = reports / "runbook_x-20261206T031500Z"
    assert result["files"] == {"json": f"{base}.json", "markdown": f"{base}.md"}
    assert json.loads((reports / "runbook_x-20261206T031500Z.json").read_text()) == {
        "status": "ok", "hosts": {"h": {"summary": "fine", "data": {"n": 1}}}}
    assert (reports / "runbook_x-20261206T031500Z.md").read_text() == "# Report\n\n| a | b |\n"
    assert {p.name for p in reports.iterdir()} == {"runbook_x-20261206T031500Z.json", "runbook_x-20261206T031500Z.md"}
    assert oct((reports / "runbook_x-20261206T031500Z.json").stat().st_mode & 0o777) == "0o644"


def test_check_mode_writes_the_report_too(run_tasks, tmp_path):
    out = run_tasks([write_task(tmp_path)], check=True)
    assert out.rc == 0, out.describe()
    assert (tmp_path / "runbook_x-20261206T031500Z.md").exists()


def test_a_name_that_is_not_a_file_name_part_fails_clearly(run_tasks, tmp_path):
    out = run_tasks([write_task(tmp_path, name="../etc/passwd")], expect_failure=True)
    assert "name must be letters, digits, '_' or '-'" in out.result("Write")["msg"], out.describe()
    assert list(tmp_path.glob("*.json")) == [] and not (tmp_path.parent / "etc").exists()


def test_an_unwritable_directory_fails_with_the_reason(run_tasks, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = run_tasks([write_task(blocker / "reports")], expect_failure=True)
    message = out.result("Write")["msg"]
    assert message.startswith(f"cannot write the report {blocker}/reports/runbook_x-20261206T031500Z.{{json,md}}: "), \
        message
