"""Write the GPUs' memory, utilisation and temperature from nvidia-smi for node_exporter's textfile collector.

Metric names and labels are documented in docs/operations/monitoring.md (GPU textfile metrics). The file is
written atomically (temporary file in the same directory, then rename), so node_exporter never reads half of
it. When nvidia-smi fails the previous file is removed: stale GPU numbers are worse than none.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile

# the column order of the gpu_info module (its recorded outputs serve both)
QUERY_FIELDS = ("index", "name", "uuid", "memory.total", "memory.used", "memory.free", "utilization.gpu",
                "temperature.gpu", "driver_version")
MIB = 1024 * 1024
# metric, help, column, unit conversion (nvidia-smi's nounits: MiB, percent, degrees Celsius)
METRICS = (
    ("aegis_gpu_memory_used_bytes", "GPU memory in use, bytes", "memory.used", lambda mib: mib * MIB),
    ("aegis_gpu_memory_total_bytes", "GPU memory size, bytes", "memory.total", lambda mib: mib * MIB),
    ("aegis_gpu_utilization_ratio", "GPU utilisation, 0-1", "utilization.gpu", lambda pct: pct / 100),
    ("aegis_gpu_temperature_celsius", "GPU temperature, degrees Celsius", "temperature.gpu", lambda c: c),
)
OUTPUT_NAME = "aegis_gpu.prom"


def query_gpus(nvidia_smi: str, timeout_s: float) -> list[dict[str, str]]:
    run = subprocess.run([nvidia_smi, "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=timeout_s, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"nvidia-smi exited with {run.returncode}: {(run.stdout + run.stderr).strip()}")
    rows = [r for r in csv.reader(run.stdout.splitlines(), skipinitialspace=True) if "".join(r).strip()]
    for row in rows:
        if len(row) != len(QUERY_FIELDS):
            raise RuntimeError(f"unexpected nvidia-smi row (want {len(QUERY_FIELDS)} columns): {row}")
    return [dict(zip(QUERY_FIELDS, (v.strip() for v in row))) for row in rows]


def _number(value: str) -> float | None:
    """nvidia-smi prints [N/A] or [Not Supported] for what a GPU cannot report: no sample then."""
    try:
        return float(value)
    except ValueError:
        return None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(gpus: list[dict[str, str]]) -> str:
    lines = []
    for metric, help_text, column, convert in METRICS:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for gpu in gpus:
            value = _number(gpu[column])
            if value is not None:
                labels = f'gpu="{_label(gpu["index"])}",name="{_label(gpu["name"])}"'
                lines.append(f"{metric}{{{labels}}} {convert(value)!r}")
    return "\n".join(lines) + "\n"


def write_atomically(directory: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".aegis_gpu.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, OUTPUT_NAME))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, help="node_exporter's --collector.textfile.directory")
    parser.add_argument("--nvidia-smi", default="nvidia-smi")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds nvidia-smi may take")
    args = parser.parse_args(argv)
    try:
        gpus = query_gpus(args.nvidia_smi, args.timeout)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        stale = os.path.join(args.output_dir, OUTPUT_NAME)
        if os.path.exists(stale):
            os.unlink(stale)
        print(f"aegis-gpu-metrics: {exc}", file=sys.stderr)
        return 1
    write_atomically(args.output_dir, render(gpus))
    return 0


if __name__ == "__main__":
    sys.exit(main())
