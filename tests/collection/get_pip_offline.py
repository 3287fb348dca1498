"""Stand-in for ansible-test's pip bootstrap script (get-pip.py from ci-files.testing.ansible.com, which
this environment cannot reach): installs pip with the interpreter's own ensurepip, then runs
`pip install <the arguments ansible-test passes>` against the normal package index."""

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
os.environ.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null; pip.conf carries the index and CA
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args, env=dict(os.environ)))
