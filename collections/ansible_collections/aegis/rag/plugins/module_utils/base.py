# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""AegisModule: the AnsibleModule every aegis.rag module is built on.

It owns what the modules share, so each module keeps only its own logic:
- the connection options of each service it talks to (the argument specs behind the doc fragments
  aegis.rag.qdrant, aegis.rag.ollama and aegis.rag.s3), merged with the module's own options;
- the clients built from those options (HTTP for Qdrant and Ollama, boto3 for S3);
- the boto3 dependency check, done when an S3 client is first needed;
- failure reporting: `result` collects the partial result, and every failure carries it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import copy

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib
from ansible_collections.aegis.rag.plugins.module_utils import s3 as s3_utils
from ansible_collections.aegis.rag.plugins.module_utils.http_client import HttpClient, HttpError
from ansible_collections.aegis.rag.plugins.module_utils.staging import StagingError

_VALIDATE_CERTS = dict(type="bool", default=True)

# Connection options per service, equal to the doc fragment of the same name.
SERVICE_OPTIONS = {
    "qdrant": dict(
        qdrant_url=dict(type="str", default="http://127.0.0.1:6333"),
        api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["QDRANT_API_KEY"])),
        timeout=dict(type="float", default=30.0),
        validate_certs=_VALIDATE_CERTS,
    ),
    "ollama": dict(
        ollama_url=dict(type="str", default="http://127.0.0.1:11434"),
        timeout=dict(type="float", default=30.0),
        validate_certs=_VALIDATE_CERTS,
    ),
    "s3": dict(
        s3_endpoint_url=dict(type="str"),
        region=dict(type="str", aliases=["aws_region"]),
        access_key=dict(type="str", no_log=True, aliases=["aws_access_key_id"]),
        secret_key=dict(type="str", no_log=True, aliases=["aws_secret_access_key"]),
        session_token=dict(type="str", no_log=True, aliases=["aws_session_token"]),
        validate_certs=_VALIDATE_CERTS,
    ),
}


def service_argument_spec(services, own_options):
    """The connection options of `services` followed by the module's own options (which win)."""
    spec = {}
    for service in services:
        if service not in SERVICE_OPTIONS:
            raise ValueError("unknown service %r, expected one of %s" % (service, ", ".join(sorted(SERVICE_OPTIONS))))
        spec.update(copy.deepcopy(SERVICE_OPTIONS[service]))
    spec.update(own_options)
    return spec


class AegisModule(AnsibleModule):
    """An AnsibleModule with the connection options of `services` and the shared plumbing.

    `result` is the result so far: `fail` and `exit` return it with their own keys on top."""

    def __init__(self, argument_spec, services=(), **kwargs):
        self.services = tuple(services)
        self.result = dict(changed=False)
        super(AegisModule, self).__init__(argument_spec=service_argument_spec(self.services, argument_spec),
                                          **kwargs)
        self._s3_client = None

    # -- outcome
    def fail(self, msg, **extra):
        """Fail with `msg` (it replaces any msg of the partial result), the partial result and `extra`."""
        fields = dict(self.result, **extra)
        fields.pop("msg", None)
        self.fail_json(msg=msg, **fields)

    def exit(self, **extra):
        self.exit_json(**dict(self.result, **extra))

    def fail_http(self, err, what, **extra):
        """Fail for an HttpError: `what` went wrong, then the request, its status and a body excerpt."""
        self.fail("%s: %s" % (what, err.msg), status=err.status, url=err.url, body=err.body_excerpt, **extra)

    @contextlib.contextmanager
    def reporting(self, http=None, s3=None, **extra):
        """Turn client errors raised in the block into a clear failure that carries the partial result
        and `extra`; no traceback reaches the user. `http` and `s3` say what failed, for errors of the
        HTTP client and of boto3; an error of a kind without one propagates (e.g. to an outer block)."""
        try:
            yield
        except HttpError as err:
            if http is None:
                raise
            self.fail_http(err, http, **extra)
        except (s3_utils.BotoCoreError, s3_utils.ClientError, s3_utils.Boto3Error) as err:
            if s3 is None:
                raise
            self.fail("%s: %s" % (s3, s3_utils.describe_error(err)), **extra)
        except StagingError as err:
            self.fail(str(err), **extra)

    # -- dependencies and clients
    def require_boto3(self):
        if not s3_utils.HAS_BOTO3:
            self.fail(missing_required_lib("boto3"), exception=s3_utils.BOTO3_IMPORT_ERROR)

    def qdrant_client(self, retries=3):
        """HttpClient for the qdrant_url, api_key, timeout and validate_certs options."""
        p = self.params
        headers = {"api-key": p["api_key"]} if p.get("api_key") else {}
        return HttpClient(p["qdrant_url"], headers=headers, timeout=p["timeout"],
                          validate_certs=p["validate_certs"], retries=retries)

    def ollama_client(self, retries=3):
        """HttpClient for the ollama_url, timeout and validate_certs options."""
        p = self.params
        return HttpClient(p["ollama_url"], timeout=p["timeout"], validate_certs=p["validate_certs"],
                          retries=retries)

    def s3_client(self):
        """The boto3 S3 client of the s3 options, built once; fails clearly without boto3."""
        if self._s3_client is None:
            self.require_boto3()
            try:
                self._s3_client = s3_utils.build_client(self.params)
            except (s3_utils.BotoCoreError, s3_utils.ClientError, s3_utils.Boto3Error, ValueError) as err:
                self.fail("cannot build an S3 client: %s" % err)
        return self._s3_client
