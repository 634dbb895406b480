#!/usr/bin/env bash
# Prepare this machine as a Ferry controller: a virtualenv with the collection's Python
# dependencies and the collection linked where ansible finds it by FQCN. Idempotent: a second
# run installs nothing. Host-side needs (CRIU, podman, sshd) are installed by the roles.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv

need_apt=()
# rsync and shellcheck: ansible-test's offline runner and its shell lint.
for pkg in python3-venv python3-dev gcc make openssh-client iproute2 rsync shellcheck git; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

req=$root/hack/requirements.txt
stamp=$venv/.ferry-requirements
if ! cmp -s "$req" "$stamp" 2>/dev/null; then
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
fi

# Playbooks and plugins are addressed by FQCN: expose this checkout as ferry.migrate.
link=$root/build/collections/ansible_collections/ferry/migrate
mkdir -p "$(dirname "$link")"
[ "$(readlink "$link" 2>/dev/null)" = "$root" ] || ln -sfn "$root" "$link"
