# -*- coding: utf-8 -*-
# Copyright (c) Aegis contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""aegis.rag.report_write: the report's two files written by the controller's own process (documented in
plugins/modules/report_write.py). A copy and a template task cost two module runs each; this costs none."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = {
    "dir": {"type": "path", "required": True},
    "name": {"type": "str", "required": True},
    "stamp": {"type": "str", "required": True},
    "document": {"type": "dict", "required": True},
    "markdown": {"type": "str", "required": True},
}
SAFE_PART = re.compile(r"^[A-Za-z0-9_-]+$")


def write_atomically(path, text):
    """Write text to path through a temporary file in the same directory, mode 0644."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".report-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        for key in ("name", "stamp"):
            if not SAFE_PART.match(args[key]):
                raise AnsibleActionFail("%s must be letters, digits, '_' or '-' (got %s)" % (key, json.dumps(args[key])))
        directory = args["dir"]
        base = os.path.join(directory, "%s-%s" % (args["name"], args["stamp"]))
        files = {"json": base + ".json", "markdown": base + ".md"}
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            write_atomically(files["json"], json.dumps(args["document"], indent=2, sort_keys=True,
                                                       separators=(",", ": ")) + "\n")
            markdown = to_text(args["markdown"])
            write_atomically(files["markdown"], markdown if markdown.endswith("\n") else markdown + "\n")
        except (OSError, TypeError, ValueError) as error:
            raise AnsibleActionFail("cannot write the report %s.{json,md}: %s" % (base, error)) from error
        result.update(changed=False, files=files)
        return result
