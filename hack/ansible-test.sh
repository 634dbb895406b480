#!/usr/bin/env bash
# Run ansible-test (sanity) offline: ansible-test needs the collection under a path ending in
# ansible_collections/ferry/migrate and a get-pip it would otherwise download.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${FERRY_VENV:-$root/.venv}  # hack/versions.sh points it at each ansible-core the collection claims
pip_version=$("$venv/bin/python" - <<'PY'
import re, ansible_test._internal.python_requirements as r, inspect
print(re.search(r"pip='([^']+)'", inspect.getsource(r.get_venv_packages)).group(1))
PY
)
cache=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$cache")"
cmp -s "$root/hack/get-pip-standin.py" "$cache" || cp "$root/hack/get-pip-standin.py" "$cache"

copy=$root/build/ansible-test/$(basename "$venv")/ansible_collections/ferry/migrate
rm -rf "$copy" && mkdir -p "$copy"
# Only what git tracks or would track: the files a fresh clone has.
(cd "$root" && git ls-files -co --exclude-standard) | rsync -a --files-from=- "$root/" "$copy/"
cd "$copy"
# A repository of its own: inside this checkout's ignored build/, git would hide every file from ansible-test.
git init -q . && git add -A
exec "$venv/bin/ansible-test" "$@"
