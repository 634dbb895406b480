"""Hostile module arguments: names and paths that try to leave the images directory or smuggle
options, fuzzed with hypothesis. Each must get a clear error naming the parameter and change nothing."""
import ipaddress
import json
import os
import pwd
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19: modules read their arguments from basic._ANSIBLE_ARGS
    import contextlib

    from ansible.module_utils import basic

    @contextlib.contextmanager
    def patch_module_args(args):
        saved = basic._ANSIBLE_ARGS
        basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode("utf-8")
        try:
            yield
        finally:
            basic._ANSIBLE_ARGS = saved

from ansible_collections.ferry.migrate.plugins.modules import (checkpoint, checkpoint_info, cordon, journal, restore,
                                                               transfer, transfer_access)

# A trailing newline slipped past patterns ending in "$" (which matches before a final newline) and
# would have added a line to authorized_keys: found by this test, kept as a regression.
HOSTILE = ["ok\n", "ok\nssh-ed25519 AAAA evil", "../x", "../../etc/passwd", "/etc/shadow", "a/../../b", "..", ".", ".hidden", "-l", "--latest", "--privileged",
           "x; rm -rf /", "$(reboot)", "`id`", "a\nb", "a\x00b", "a b", "x\" ,command=\"sh", "é", "a" * 300, ""]
names = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40))


def bad_id(value):
    return not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", value) or ".." in value


def bad_container(value):
    return not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}", value)


def bad_address(value):
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return True
    return False


def bad_key_body(value):
    return not value.split() or not re.fullmatch(r"[A-Za-z0-9+/]+={0,3}", value.split()[0])


def bad_path_part(value):
    return value != "" and (not re.fullmatch(r"[A-Za-z0-9_./-]+", value) or ".." in value.split("/"))


def bad_user(value):
    # Not a login name, or no such user here: either way the grant has no authorized_keys to go in.
    try:
        pwd.getpwnam(value)
    except (KeyError, ValueError):
        return True
    return False


def run(main, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit):
        main()
    return json.loads(capsys.readouterr().out)


def snapshot(root):
    return sorted((path, sorted(files)) for path, dummy, files in os.walk(root))


def _access(**changes):
    def build(value, root):
        args = {"checkpoint_id": "ok", "public_key": "ssh-ed25519 AAAAC3", "source_address": "10.0.0.1",
                "images_dir": root, "authorized_keys": root + "/ak", "user": "root"}
        args.update({key: make(value, root) for key, make in changes.items()})
        return args
    return build


CASES = [
    (checkpoint.main, "container", bad_container, lambda v, d: {"container": v, "checkpoint_id": "ok", "images_dir": d}),
    (checkpoint.main, "checkpoint_id", bad_id, lambda v, d: {"container": "ok", "checkpoint_id": v, "images_dir": d}),
    (checkpoint.main, "checkpoint_id", bad_id, lambda v, d: {"checkpoint_id": v, "state": "absent", "images_dir": d}),
    (checkpoint_info.main, "checkpoint_id", bad_id, lambda v, d: {"checkpoint_id": v, "images_dir": d}),
    (restore.main, "checkpoint_id", bad_id, lambda v, d: {"checkpoint_id": v, "images_dir": d}),
    (restore.main, "checkpoint_id", bad_id, lambda v, d: {"checkpoint_id": v, "state": "absent", "images_dir": d}),
    (journal.main, "updates", bad_id, lambda v, d: {"path": d + "/journal.json", "updates": [{"id": v, "status": "migrating"}]}),
    (transfer.main, "checkpoint_id", bad_id, lambda v, d: {"checkpoint_id": v, "target": "127.0.0.1", "images_dir": d,
                                                           "private_key": "not-a-real-private-key-0123456789",
                                                           "host_keys": ["ssh-ed25519 AAAA"]}),
    (transfer_access.main, "checkpoint_id", bad_id, _access(checkpoint_id=lambda v, d: v)),
    (transfer_access.main, "source_address", bad_address, _access(source_address=lambda v, d: v)),
    (transfer_access.main, "public_key", bad_key_body, _access(public_key=lambda v, d: "ssh-ed25519 " + v)),
    (transfer_access.main, "images_dir", bad_path_part, _access(images_dir=lambda v, d: d + "/" + v)),
    (transfer_access.main, "python", bad_path_part, _access(python=lambda v, d: "/usr/bin/" + v)),
    (transfer_access.main, "user", bad_user, _access(user=lambda v, d: v)),
]


@pytest.mark.parametrize("main, option, hostile, build", CASES, ids=["%s-%s-%d" % (c[0].__module__.rsplit(".", 1)[1], c[1], i) for i, c in enumerate(CASES)])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=names)
def test_hostile_value_is_refused_and_changes_nothing(tmp_path_factory, capsys, main, option, hostile, build, value):
    assume(hostile(value))
    root = str(tmp_path_factory.mktemp("images"))
    before = snapshot(root)
    result = run(main, build(value, root), capsys)
    assert result.get("failed"), "%s=%r was accepted: %s" % (option, value, result)
    assert option in result["msg"].split(":")[0] or result["msg"].startswith(option), result["msg"]
    assert snapshot(root) == before, "%s=%r changed files" % (option, value)


def test_cordon_reason_is_data_not_a_path(tmp_path, capsys):
    result = run(cordon.main, {"reason": "../../etc/passwd\n$(reboot)", "images_dir": str(tmp_path)}, capsys)
    assert result["changed"] and os.listdir(tmp_path) == [".cordoned"]
    assert json.load(open(tmp_path / ".cordoned"))["reason"] == "../../etc/passwd\n$(reboot)"
    assert run(cordon.main, {"images_dir": str(tmp_path)}, capsys)["changed"] is False
    assert run(cordon.main, {"state": "absent", "images_dir": str(tmp_path)}, capsys)["changed"] is True
    assert os.listdir(tmp_path) == []
