#!/usr/bin/env bash
# The ecosystem's checkers, as Galaxy and AWX users meet the collection: ansible-lint's production
# profile, galaxy-importer on the built tarball, antsibull-changelog's lint, ansible-builder on the
# EE definition. In a virtualenv of their own: they pin their own versions of ansible-lint's kin.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-lint
req=$root/hack/lint-requirements.txt
if ! cmp -s "$req" "$venv/.ferry-requirements" 2>/dev/null; then
    [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.ferry-requirements"
fi
export PATH=$venv/bin:$PATH

# A copy of what a fresh clone has, under the path ansible-lint resolves the collection from.
work=$root/build/lint
rm -rf "$work" && mkdir -p "$work/ansible_collections/ferry/migrate"
(cd "$root" && git ls-files -co --exclude-standard) | rsync -a --files-from=- "$root/" "$work/ansible_collections/ferry/migrate/"
cd "$work/ansible_collections/ferry/migrate"

echo "== antsibull-changelog lint"
antsibull-changelog lint
echo "== ansible-lint --profile production"
ANSIBLE_COLLECTIONS_PATH=$work ansible-lint --offline --nocolor -f pep8 --profile production
echo "== galaxy-importer"
ansible-galaxy collection build --force --output-path "$work" >/dev/null
printf '[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = True\nOFFLINE_ANSIBLE_LINT = True\n' >"$work/importer.cfg"
(cd "$work" && GALAXY_IMPORTER_CONFIG=$work/importer.cfg python -m galaxy_importer.main ferry-migrate-*.tar.gz) >"$work/importer.log" 2>&1 \
    || { cat "$work/importer.log"; exit 1; }
if grep -E "^(WARNING|ERROR)" "$work/importer.log"; then echo "galaxy-importer: warnings or errors above"; exit 1; fi
echo "galaxy-importer: clean"
echo "== ansible-builder create (the EE definition, with the tarball it installs)"
cp "$work"/ferry-migrate-*.tar.gz execution-environment/
ansible-builder create --output-filename Containerfile -f execution-environment/execution-environment.yml -c "$work/ee-context" >/dev/null
test -s "$work/ee-context/Containerfile" && echo "ansible-builder: context in $work/ee-context"
