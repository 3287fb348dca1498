#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: gpu_info
short_description: Report the NVIDIA GPUs of a host
version_added: 0.1.0
description:
  - Reads the GPUs of the target with C(nvidia-smi) (count, names, memory total and used, utilisation,
    temperature, driver and CUDA versions), for capacity checks before placing Ollama models.
  - A host without C(nvidia-smi), without a driver or without GPUs is not an error; RV(gpus) is then
    empty and RV(msg) says why.
author:
  - Aegis maintainers (@aegis-rag)
extends_documentation_fragment:
  - aegis.rag.attributes
  - aegis.rag.attributes.READ_ONLY
options:
  nvidia_smi_path:
    description:
      - Path of C(nvidia-smi). By default it is looked up in E(PATH) and the usual system directories.
    type: path
  timeout:
    description:
      - Seconds each C(nvidia-smi) call may take (a broken driver can make it hang).
    type: float
    default: 15.0
"""

EXAMPLES = r"""
- name: Read the GPUs
  aegis.rag.gpu_info:
  register: gpu

- name: Refuse to place the 7B model on a GPU with less than 8 GiB free
  ansible.builtin.assert:
    that:
      - gpu.gpu_count > 0
      - (gpu.gpus | map(attribute='memory_free_mib') | max) >= 8192
    fail_msg: "no GPU with 8 GiB free: {{ gpu.gpus }}"
"""

RETURN = r"""
gpus:
  description: One entry per GPU; empty when there is none (or no C(nvidia-smi)).
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: GPU index as nvidia-smi numbers it.
      type: int
    name:
      description: Product name.
      type: str
    uuid:
      description: GPU UUID.
      type: str
    memory_total_mib:
      description: Total memory in MiB.
      type: int
    memory_used_mib:
      description: Used memory in MiB.
      type: int
    memory_free_mib:
      description: Free memory in MiB.
      type: int
    utilization_pct:
      description: GPU utilisation in percent; null when the GPU does not report it.
      type: int
    temperature_c:
      description: Temperature in degrees Celsius; null when not reported.
      type: int
  sample:
    - index: 0
      name: NVIDIA L4
      uuid: GPU-5d2c9c3e-4f0b-8b8e-1a0c-3a7b3c1b2f10
      memory_total_mib: 23034
      memory_used_mib: 4710
      memory_free_mib: 22000
      utilization_pct: 37
      temperature_c: 51
gpu_count:
  description: Number of GPUs.
  returned: always
  type: int
  sample: 1
driver_version:
  description: NVIDIA driver version; null without GPUs.
  returned: always
  type: str
  sample: 550.54.15
cuda_version:
  description: Highest CUDA version the driver supports, from the nvidia-smi header; null when unknown.
  returned: always
  type: str
  sample: "12.4"
nvidia_smi:
  description: Path of the nvidia-smi that was run; null when none was found.
  returned: always
  type: str
  sample: /usr/bin/nvidia-smi
msg:
  description: Summary, or why no GPU is reported.
  returned: always
  type: str
  sample: 1 GPU found
"""

import csv
import os
import re
import subprocess

from ansible_collections.aegis.rag.plugins.module_utils.base import AegisModule

QUERY_FIELDS = ("index", "name", "uuid", "memory.total", "memory.used", "memory.free", "utilization.gpu",
                "temperature.gpu", "driver_version")
RESULT_KEYS = ("index", "name", "uuid", "memory_total_mib", "memory_used_mib", "memory_free_mib",
               "utilization_pct", "temperature_c", "driver_version")
INT_KEYS = frozenset(("index", "memory_total_mib", "memory_used_mib", "memory_free_mib", "utilization_pct",
                      "temperature_c"))
CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")
NO_DEVICES = "no devices were found"


def _value(key, raw):
    raw = raw.strip()
    if not raw or raw.startswith("[") or raw.upper() == "N/A":  # [N/A], [Not Supported]
        return None
    if key in INT_KEYS:
        try:
            return int(float(raw))
        except ValueError:
            return None
    return raw


def parse_query_csv(text):
    """Rows of `nvidia-smi --query-gpu=QUERY_FIELDS --format=csv,noheader,nounits` as dicts."""
    gpus = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(RESULT_KEYS):
            raise ValueError("unexpected nvidia-smi line (%d fields, expected %d): %s"
                             % (len(row), len(RESULT_KEYS), ", ".join(row)))
        gpus.append({key: _value(key, raw) for key, raw in zip(RESULT_KEYS, row)})
    return gpus


def parse_cuda_version(header):
    match = CUDA_VERSION.search(header or "")
    return match.group(1) if match else None


def find_nvidia_smi(module):
    path = module.params["nvidia_smi_path"]
    if path:
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return module.get_bin_path("nvidia-smi", opt_dirs=["/usr/bin", "/usr/local/nvidia/bin", "/usr/local/bin"])


def run(cmd, timeout):
    """(rc, output) of a command; rc None when it could not run or timed out."""
    try:
        proc = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                              universal_newlines=True, env=dict(os.environ, LC_ALL="C"))
    except subprocess.TimeoutExpired:
        return None, "timed out after %ss" % timeout
    except OSError as exc:
        return None, str(exc)
    return proc.returncode, proc.stdout


def main():
    module = AegisModule(dict(nvidia_smi_path=dict(type="path"), timeout=dict(type="float", default=15.0)),
                         supports_check_mode=True)
    module.result.update(gpus=[], gpu_count=0, driver_version=None, cuda_version=None, nvidia_smi=None)
    smi = find_nvidia_smi(module)
    if smi is None:
        where = module.params["nvidia_smi_path"] or "PATH"
        module.exit(msg="no GPU: nvidia-smi not found (%s)" % where)
    module.result["nvidia_smi"] = smi

    rc, out = run([smi, "--query-gpu=" + ",".join(QUERY_FIELDS), "--format=csv,noheader,nounits"],
                  module.params["timeout"])
    if rc != 0:
        text = " ".join((out or "").split())[:300]
        if NO_DEVICES not in text.lower():  # nvidia-smi there but unusable: worth a warning
            module.warn("nvidia-smi failed (rc=%s): %s" % (rc, text))
        module.exit(msg="no GPU: %s" % (text or "nvidia-smi failed with rc=%s" % rc))
    try:
        gpus = parse_query_csv(out)
    except ValueError as exc:
        module.fail(str(exc))

    rc, header = run([smi], module.params["timeout"])
    module.result["cuda_version"] = parse_cuda_version(header) if rc == 0 else None
    module.result["driver_version"] = gpus[0]["driver_version"] if gpus else None
    for gpu in gpus:
        gpu.pop("driver_version")
    module.result.update(gpus=gpus, gpu_count=len(gpus))
    module.exit(msg="%d GPU%s found" % (len(gpus), "" if len(gpus) == 1 else "s"))


if __name__ == "__main__":
    main()
