#!/usr/bin/env bash
# Sanity and unit tests on every ansible-core the collection claims (meta/runtime.yml: >= 2.16) that
# runs on this machine's Python; the newest (.venv, make test) also runs the integration tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
for version in ${FERRY_ANSIBLE_VERSIONS:-2.16 2.17 2.18}; do
    venv=$root/build/venvs/ansible-core-$version
    want="ansible-core==$version.* $(grep -vE '^(#|ansible-core|$)' "$root/hack/requirements.txt" | tr '\n' ' ')"
    if [ "$(cat "$venv/.ferry-requirements" 2>/dev/null)" != "$want" ]; then
        rm -rf "$venv" && /usr/bin/python3 -m venv "$venv"
        # shellcheck disable=SC2086  # one word per requirement
        "$venv/bin/pip" install -q --disable-pip-version-check $want
        echo "$want" >"$venv/.ferry-requirements"
    fi
    echo "== ansible-core $("$venv/bin/python" -c 'import ansible; print(ansible.__version__)'): sanity"
    FERRY_VENV=$venv "$root/hack/ansible-test.sh" sanity --venv --python "$python"
    echo "== ansible-core $version: unit"
    (cd "$root" && ANSIBLE_CONFIG=$root/ansible.cfg "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit)
done
