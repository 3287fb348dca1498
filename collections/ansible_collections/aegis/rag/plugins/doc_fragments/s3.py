# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # S3 options of the backup modules (argument spec: SERVICE_OPTIONS["s3"] in module_utils/base.py).
    DOCUMENTATION = r"""
options:
  s3_endpoint_url:
    description:
      - URL of an S3-compatible endpoint (MinIO, Ceph, a test server). Omit for AWS S3.
    type: str
  region:
    description:
      - S3 region. When omitted, boto3 resolves it (E(AWS_REGION), E(AWS_DEFAULT_REGION), config files).
    type: str
    aliases: [aws_region]
  access_key:
    description:
      - Access key ID. When omitted, boto3's usual credential chain applies (environment, files, instance role).
    type: str
    aliases: [aws_access_key_id]
  secret_key:
    description:
      - Secret access key that goes with O(access_key).
    type: str
    aliases: [aws_secret_access_key]
  session_token:
    description:
      - Session token for temporary credentials.
    type: str
    aliases: [aws_session_token]
  validate_certs:
    description:
      - Verify TLS certificates of HTTPS endpoints. Set to V(false) only for self-signed test setups.
    type: bool
    default: true
requirements:
  - boto3 on the target host
"""
