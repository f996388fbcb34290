"""Stand-in for the get-pip script that ansible-test downloads, for machines that cannot fetch it.

ansible-test runs it as `python get_pip.py [pip options] pip==X setuptools==Y ... --no-setuptools
--no-wheel` inside an empty virtualenv. This bootstraps pip with ensurepip, then installs the
requested packages with the machine's own pip settings (index, CA bundle) in force.
"""

import os
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
env = dict(os.environ)
env.pop("PIP_CONFIG_FILE", None)  # ensurepip's isolation setting would hide the machine's index
subprocess.check_call([sys.executable, "-m", "pip", "install", *args], env=env)
