"""Writes fake nvidia-smi scripts that replay recorded output (shared by unit and playbook tests)."""

from __future__ import annotations

import shlex
from pathlib import Path

DATA = Path(__file__).parent / "data"


def fake_nvidia_smi(directory: Path, query_file: str | None = "nvidia-smi-query-2xL4.csv",
                    rc: int = 0, message: str = "", hang_s: float = 0) -> Path:
    """A script that prints the recorded query CSV for --query-gpu and the recorded header otherwise.

    With rc != 0 it prints `message` and exits with rc (e.g. 6 'No devices were found')."""
    script = directory / "nvidia-smi"
    lines = ["#!/bin/sh"]
    if hang_s:
        lines.append(f"sleep {hang_s}")
    if rc:
        lines += [f"echo {shlex.quote(message)}", f"exit {rc}"]
    else:
        query = shlex.quote(str(DATA / query_file))
        header = shlex.quote(str(DATA / "nvidia-smi-header.txt"))
        lines += ['case "$*" in', f"  *--query-gpu=*) cat {query} ;;", f"  *) cat {header} ;;", "esac"]
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o755)
    return script
