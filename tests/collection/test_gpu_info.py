"""aegis.rag.gpu_info through ansible-playbook, with fake nvidia-smi scripts replaying recorded output."""

from __future__ import annotations

import pytest

from ansible_collections.aegis.rag.tests.unit.helpers.fake_nvidia_smi import fake_nvidia_smi

SYSTEM_PYTHON = "/usr/bin/python3"


def gpu_task(**options) -> dict:
    return {"name": "gpu", "aegis.rag.gpu_info": options}


def test_reports_recorded_gpus_in_normal_and_check_mode(run_tasks, tmp_path):
    smi = fake_nvidia_smi(tmp_path)
    for check in (False, True):
        result = run_tasks([gpu_task(nvidia_smi_path=str(smi))], check=check, python=SYSTEM_PYTHON).result("gpu")
        assert result["changed"] is False and result["gpu_count"] == 2
        assert result["driver_version"] == "550.54.15" and result["cuda_version"] == "12.4"
        assert [g["name"] for g in result["gpus"]] == ["NVIDIA L4", "NVIDIA L4"]
        assert result["gpus"][0]["memory_used_mib"] == 4710 and result["gpus"][0]["utilization_pct"] == 37
        assert result["nvidia_smi"] == str(smi) and result["msg"] == "2 GPUs found"


def test_this_host_without_nvidia_smi_has_no_gpu(run_tasks):
    result = run_tasks([gpu_task()], python=SYSTEM_PYTHON).result("gpu")
    assert result["gpus"] == [] and result["gpu_count"] == 0 and not result.get("failed")
    assert "nvidia-smi not found" in result["msg"]


@pytest.mark.parametrize("rc,message,warns", [
    (6, "No devices were found", False),
    (9, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", True),
])
def test_no_device_or_no_driver_is_not_a_failure(run_tasks, tmp_path, rc, message, warns):
    smi = fake_nvidia_smi(tmp_path, rc=rc, message=message)
    result = run_tasks([gpu_task(nvidia_smi_path=str(smi))], python=SYSTEM_PYTHON).result("gpu")
    assert result["gpus"] == [] and message in result["msg"]
    assert bool(result.get("warnings")) is warns


def test_bad_parameter_fails_clearly(run_tasks):
    result = run_tasks([gpu_task(timeout="soon")], expect_failure=True, python=SYSTEM_PYTHON).result("gpu")
    assert "timeout" in result["msg"] and "float" in result["msg"]
