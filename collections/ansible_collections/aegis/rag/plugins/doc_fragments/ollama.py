# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options of every Ollama module (argument spec: SERVICE_OPTIONS["ollama"] in module_utils/base.py).
    DOCUMENTATION = r"""
options:
  ollama_url:
    description:
      - Base URL of the Ollama REST API, as seen from the target host.
    type: str
    default: http://127.0.0.1:11434
  timeout:
    description:
      - Timeout in seconds of each short HTTP request to Ollama (connection and each read).
      - Connection errors, timeouts and HTTP 502/503/504 are retried three times with jittered backoff.
    type: float
    default: 30.0
  validate_certs:
    description:
      - Verify TLS certificates of HTTPS endpoints. Set to V(false) only for self-signed test setups.
    type: bool
    default: true
"""
