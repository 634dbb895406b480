"""Stand-in for ansible-test's get-pip bootstrap, whose download host is unreachable offline.

ansible-test runs this inside a fresh virtual environment with pip's install arguments; it bootstraps
pip from the interpreter's own ensurepip wheel, then installs the pinned pip from the package index.
"""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
# --no-setuptools and --no-wheel are get-pip's own options, not pip's.
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + args)
