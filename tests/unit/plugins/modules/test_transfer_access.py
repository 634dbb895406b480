"""transfer_access (its grant is module_utils/_access.py): the grant line (forced command, source
address, expiry), its idempotence, and the sudo rule that lets a login user other than root run the receiver."""
import os
import pwd
import re
import subprocess
import sys
import threading

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _access, _wire
from ansible_collections.ferry.migrate.plugins.modules import transfer_access

PROGRAM = "/var/lib/ferry/.ferry-wire-root.py"


def grant(expires_at, user="root"):
    command = _access.forced_command("/usr/bin/python3", PROGRAM, "receive", "/var/lib/ferry", "c1", user)
    return _access.grant_line("ssh-ed25519 AAAAC3", "10.0.0.1", command, "c1", expires_at)


def test_grant_is_restricted_and_expires():
    line = grant(0)
    assert line.startswith('from="10.0.0.1",restrict,expiry-time="197001010000Z",command="/usr/bin/python3 '
                           '/var/lib/ferry/.ferry-wire-root.py receive /var/lib/ferry c1" ssh-ed25519 AAAAC3 ferry-transfer:c1')


def test_a_login_user_other_than_root_runs_the_receiver_through_sudo_and_nothing_else():
    line = grant(0, "ops")
    assert 'command="sudo -n /usr/bin/python3 /var/lib/ferry/.ferry-wire-root.py receive /var/lib/ferry c1"' in line
    rule = _access.sudoers_rule("ops", "sudo -n /usr/bin/python3 %s receive /var/lib/ferry c1" % PROGRAM, "c1")
    alias = re.search(r"^Cmnd_Alias (FERRY_[0-9A-F]{16}) = /usr/bin/python3 %s receive /var/lib/ferry c1$" % re.escape(PROGRAM), rule, re.M)
    assert alias, rule
    assert re.search(r"^ops ALL = \(root\) NOPASSWD: %s$" % alias.group(1), rule, re.M)
    assert "ALL = (root) NOPASSWD: ALL" not in rule
    assert "." not in os.path.basename(_access.sudoers_path("c1.with.dots"))  # sudo skips names with dots


@pytest.mark.skipif(not os.path.exists("/usr/sbin/visudo"), reason="sudo is not installed")
def test_the_sudo_rule_is_valid_sudoers(tmp_path):
    rule = _access.sudoers_rule("ops", "sudo -n /usr/bin/python3 %s send /var/lib/ferry a-b.c_1" % PROGRAM, "a-b.c_1")
    path = tmp_path / "rule"
    path.write_text(rule)
    assert subprocess.run(["/usr/sbin/visudo", "-c", "-q", "-f", str(path)], check=False).returncode == 0


def test_regranting_only_moves_the_expiry_changes_nothing(tmp_path):
    path = str(tmp_path / "authorized_keys")
    with open(path, "w") as handle:
        handle.write("ssh-ed25519 AAAAother admin\n")
    assert _access.update_authorized_keys(path, "c1", grant(1000), False) == (True, True)
    assert _access.update_authorized_keys(path, "c1", grant(999999), False) == (False, True)
    text = open(path).read()
    assert text.startswith("ssh-ed25519 AAAAother admin\n") and len(re.findall("ferry-transfer:c1", text)) == 1
    assert _access.update_authorized_keys(path, "c1", None, False) == (True, False)
    assert open(path).read() == "ssh-ed25519 AAAAother admin\n"


def test_removing_a_grant_from_a_user_without_keys_creates_nothing(tmp_path):
    path = str(tmp_path / "home" / ".ssh" / "authorized_keys")
    assert _access.update_authorized_keys(path, "c1", None, False) == (False, False)
    assert not os.path.exists(tmp_path / "home")


def test_the_last_grant_going_does_not_take_the_program_from_a_grant_made_meanwhile(tmp_path, monkeypatch):
    # Two moves of a wave to one host: A revokes the last grant while B grants. Whatever the
    # interleaving, B's key must end with the wire program there to run.
    keys, images = str(tmp_path / "authorized_keys"), str(tmp_path / "images")
    # A module gets the program from Ansible's module loader; here the collection is a namespace package.
    monkeypatch.setattr(_access.pkgutil, "get_data", lambda package, name: open(_wire.__file__, "rb").read())
    params = dict(images_dir=images, python="/usr/bin/python3", user="root", authorized_keys=keys, direction="receive",
                  public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKey",
                  source_address="10.0.0.1", expires_in=600)
    a = _access.Grant(dict(params, checkpoint_id="a", state="present"))
    a.apply(False, False)
    revoke_a = _access.Grant(dict(params, checkpoint_id="a", state="absent"))
    grant_b = threading.Thread(target=_access.Grant(dict(params, checkpoint_id="b", state="present")).apply, args=(False, False))
    real_program = _access.Grant._program

    def program_after_b_had_its_chance(self, wanted, check_mode):
        if self is revoke_a:
            grant_b.start()
            grant_b.join(1)  # B runs to its end here unless A's edit still holds the file
        return real_program(self, wanted, check_mode)

    monkeypatch.setattr(_access.Grant, "_program", program_after_b_had_its_chance)
    assert os.path.exists(os.path.join(images, ".ferry-wire-root.py"))
    revoke_a.apply(False, False)
    grant_b.join()
    assert "ferry-transfer:b" in open(keys).read() and "ferry-transfer:a" not in open(keys).read()
    assert os.path.exists(os.path.join(images, ".ferry-wire-root.py")), "B's key is left without the program it runs"


def test_one_login_users_last_grant_going_leaves_another_users_program(tmp_path, monkeypatch):
    # Two inventories reach one host as different users: each user's grants keep that user's program.
    other = next((entry.pw_name for entry in pwd.getpwall() if entry.pw_uid != 0 and _access._transport.valid_user(entry.pw_name)), None)
    if other is None:
        pytest.skip("this machine has no login name other than root")
    monkeypatch.setattr(_access.pkgutil, "get_data", lambda package, name: open(_wire.__file__, "rb").read())
    images = str(tmp_path / "images")
    params = dict(images_dir=images, python="/usr/bin/python3", direction="receive", source_address="10.0.0.1", expires_in=600,
                  public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKey")
    root = _access.Grant(dict(params, user="root", authorized_keys=str(tmp_path / "root_keys"), checkpoint_id="a", state="present"))
    root.apply(False, False)
    theirs = _access.Grant(dict(params, user=other, authorized_keys=str(tmp_path / "other_keys"), checkpoint_id="b", state="absent"))
    assert theirs.program != root.program
    theirs.apply(False, False)  # the other user's last (here only) grant goes
    assert os.path.exists(root.program), "root's key is left without the program it runs"


def test_the_ssh_client_address_is_found_above_a_cleared_environment():
    # A child whose environment lacks SSH_CONNECTION, under a parent that has it: as under sudo.
    code = "from ansible_collections.ferry.migrate.plugins.module_utils import _access as t; print(t.ssh_client_address())"
    outer = ("import os, subprocess, sys; env = {k: v for k, v in os.environ.items() if k != 'SSH_CONNECTION'}; "
             "sys.exit(subprocess.run([sys.executable, '-c', %r], env=env).returncode)" % code)
    collections = os.path.abspath(os.path.join(os.path.dirname(_access.__file__), *[".."] * 5))
    env = dict(os.environ, SSH_CONNECTION="192.0.2.7 50000 192.0.2.1 22", PYTHONPATH=collections)
    out = subprocess.run([sys.executable, "-c", outer], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "192.0.2.7"


def run_module(module, args, capsys):
    from test_hostile_arguments import patch_module_args  # ansible-core's, or its stand-in before 2.19
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    import json
    return json.loads(capsys.readouterr().out)


def test_diff_mode_shows_the_grant_and_check_mode_writes_nothing(tmp_path, capsys):
    keys = tmp_path / "authorized_keys"
    keys.write_text("ssh-ed25519 AAAAother admin\n")
    args = {"checkpoint_id": "c1", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKey",
            "source_address": "10.0.0.1", "authorized_keys": str(keys), "images_dir": str(tmp_path / "images"), "user": "root",
            "_ansible_check_mode": True, "_ansible_diff": True}
    result = run_module(transfer_access, args, capsys)
    assert result["changed"] and keys.read_text() == "ssh-ed25519 AAAAother admin\n" and not os.path.exists(tmp_path / "images")
    [key_diff, rule_diff] = result["diff"]
    assert key_diff["before"] == "" and key_diff["after"].startswith('from="10.0.0.1",restrict') and key_diff["after"].endswith(" ferry-transfer:c1\n")
    assert rule_diff["before"] == rule_diff["after"] == ""  # root needs no sudo rule
    result = run_module(transfer_access, dict(args, _ansible_check_mode=False), capsys)
    assert result["changed"] and "ferry-transfer:c1" in keys.read_text()
    again = run_module(transfer_access, dict(args, state="absent", public_key=None, _ansible_check_mode=False), capsys)
    assert again["changed"] and again["diff"][0]["after"] == "" and again["diff"][0]["before"].endswith(" ferry-transfer:c1\n")
    assert keys.read_text() == "ssh-ed25519 AAAAother admin\n"
