"""gpu_info: the nvidia-smi parsers on recorded output, and the no-GPU paths."""

from __future__ import annotations

import pytest
from ansible_collections.aegis.rag.plugins.modules import gpu_info

from ansible_collections.aegis.rag.tests.unit.helpers.fake_nvidia_smi import DATA, fake_nvidia_smi


def test_parse_two_gpus():
    gpus = gpu_info.parse_query_csv((DATA / "nvidia-smi-query-2xL4.csv").read_text())
    assert len(gpus) == 2
    assert gpus[0] == {"index": 0, "name": "NVIDIA L4", "uuid": "GPU-5d2c9c3e-4f0b-8b8e-1a0c-3a7b3c1b2f10",
                       "memory_total_mib": 23034, "memory_used_mib": 4710, "memory_free_mib": 17942,
                       "utilization_pct": 37, "temperature_c": 51, "driver_version": "550.54.15"}
    assert gpus[1]["index"] == 1 and gpus[1]["memory_used_mib"] == 1


def test_not_available_values_become_none():
    (gpu,) = gpu_info.parse_query_csv((DATA / "nvidia-smi-query-na.csv").read_text())
    assert gpu["utilization_pct"] is None and gpu["temperature_c"] is None
    assert gpu["memory_total_mib"] == 15360 and gpu["name"] == "Tesla T4"


def test_blank_output_is_no_gpu_and_bad_lines_are_errors():
    assert gpu_info.parse_query_csv("\n\n") == []
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        gpu_info.parse_query_csv("0, NVIDIA L4, 23034\n")


def test_cuda_version_from_header():
    assert gpu_info.parse_cuda_version((DATA / "nvidia-smi-header.txt").read_text()) == "12.4"
    assert gpu_info.parse_cuda_version("| NVIDIA-SMI 580.65.06  Driver Version: 580.65.06  CUDA Version: 13.0 |") \
        == "13.0"
    assert gpu_info.parse_cuda_version("garbage") is None


def test_main_reports_gpus(call_module, tmp_path):
    smi = fake_nvidia_smi(tmp_path)
    result = call_module(gpu_info.main, {"nvidia_smi_path": str(smi)})
    assert not result.get("failed") and result["changed"] is False
    assert result["gpu_count"] == 2 and result["driver_version"] == "550.54.15"
    assert result["cuda_version"] == "12.4" and "driver_version" not in result["gpus"][0]


@pytest.mark.parametrize("rc,message", [(6, "No devices were found"),
                                        (9, ("NVIDIA-SMI has failed because it couldn't communicate with the "
                                             "NVIDIA driver."))])
def test_main_no_gpu_is_not_a_failure(call_module, tmp_path, rc, message):
    smi = fake_nvidia_smi(tmp_path, rc=rc, message=message)
    result = call_module(gpu_info.main, {"nvidia_smi_path": str(smi)})
    assert not result.get("failed")
    assert result["gpus"] == [] and result["gpu_count"] == 0 and message[:20] in result["msg"]


def test_main_without_nvidia_smi(call_module, tmp_path):
    result = call_module(gpu_info.main, {"nvidia_smi_path": str(tmp_path / "missing")})
    assert not result.get("failed") and result["gpus"] == [] and result["nvidia_smi"] is None
    assert "not found" in result["msg"]


def test_main_hung_nvidia_smi_is_bounded(call_module, tmp_path):
    smi = fake_nvidia_smi(tmp_path, hang_s=30)
    result = call_module(gpu_info.main, {"nvidia_smi_path": str(smi), "timeout": 0.5})
    assert not result.get("failed") and result["gpus"] == [] and "timed out" in result["msg"]
