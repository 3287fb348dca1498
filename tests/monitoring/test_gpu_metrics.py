"""The GPU textfile collector (roles/monitoring/files/aegis_gpu_metrics.py) on recorded nvidia-smi outputs."""

import os
import subprocess
import sys

import pytest
from ansible_collections.aegis.rag.tests.unit.helpers.fake_nvidia_smi import fake_nvidia_smi
from prometheus_client.parser import text_string_to_metric_families

from .conftest import FILES

SCRIPT = FILES / "aegis_gpu_metrics.py"
MIB = 1024 * 1024


def collect(tmp_path, smi) -> subprocess.CompletedProcess:
    out = tmp_path / "textfile"
    out.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, str(SCRIPT), "--output-dir", str(out), "--nvidia-smi", str(smi)],
                          capture_output=True, text=True, timeout=60)


def samples(path) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels["gpu"]): s.value
            for fam in text_string_to_metric_families(path.read_text()) for s in fam.samples}


def test_two_l4_gpus_become_the_documented_metrics(tmp_path):
    run = collect(tmp_path, fake_nvidia_smi(tmp_path))
    assert run.returncode == 0, run.stderr
    got = samples(tmp_path / "textfile/aegis_gpu.prom")
    assert got == {
        ("aegis_gpu_memory_used_bytes", "0"): 4710 * MIB, ("aegis_gpu_memory_used_bytes", "1"): 1 * MIB,
        ("aegis_gpu_memory_total_bytes", "0"): 23034 * MIB, ("aegis_gpu_memory_total_bytes", "1"): 23034 * MIB,
        ("aegis_gpu_utilization_ratio", "0"): 0.37, ("aegis_gpu_utilization_ratio", "1"): 0.0,
        ("aegis_gpu_temperature_celsius", "0"): 51, ("aegis_gpu_temperature_celsius", "1"): 34,
    }
    families = list(text_string_to_metric_families((tmp_path / "textfile/aegis_gpu.prom").read_text()))
    assert {f.type for f in families} == {"gauge"}
    assert {s.labels["name"] for f in families for s in f.samples} == {"NVIDIA L4"}
    assert os.listdir(tmp_path / "textfile") == ["aegis_gpu.prom"], "temporary file left behind"


def test_values_a_gpu_cannot_report_are_left_out(tmp_path):
    run = collect(tmp_path, fake_nvidia_smi(tmp_path, "nvidia-smi-query-na.csv"))
    assert run.returncode == 0, run.stderr
    got = samples(tmp_path / "textfile/aegis_gpu.prom")
    assert got == {("aegis_gpu_memory_used_bytes", "0"): 0, ("aegis_gpu_memory_total_bytes", "0"): 15360 * MIB}


@pytest.mark.parametrize("smi_kind", ["no devices", "missing binary"])
def test_a_failing_nvidia_smi_removes_stale_metrics_and_fails(tmp_path, smi_kind):
    assert collect(tmp_path, fake_nvidia_smi(tmp_path)).returncode == 0
    smi = (fake_nvidia_smi(tmp_path, rc=6, message="No devices were found") if smi_kind == "no devices"
           else tmp_path / "absent/nvidia-smi")
    run = collect(tmp_path, smi)
    assert run.returncode == 1 and "aegis-gpu-metrics:" in run.stderr
    assert not (tmp_path / "textfile/aegis_gpu.prom").exists()
