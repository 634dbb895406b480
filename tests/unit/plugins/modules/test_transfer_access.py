"""transfer_access: the grant line (forced command, source address, expiry) and its idempotence."""
import re

from ansible_collections.ferry.migrate.plugins.modules import transfer_access


def grant(expires_at):
    return transfer_access.grant_line("ssh-ed25519 AAAAC3", "10.0.0.1", "/usr/bin/python3", "/var/lib/ferry/.ferry-wire.py",
                                      "receive", "/var/lib/ferry", "c1", expires_at)


def test_grant_is_restricted_and_expires():
    line = grant(0)
    assert line.startswith('from="10.0.0.1",restrict,expiry-time="197001010000Z",command="/usr/bin/python3 '
                           '/var/lib/ferry/.ferry-wire.py receive /var/lib/ferry c1" ssh-ed25519 AAAAC3 ferry-transfer:c1')


def test_regranting_only_moves_the_expiry_changes_nothing(tmp_path):
    path = str(tmp_path / "authorized_keys")
    with open(path, "w") as handle:
        handle.write("ssh-ed25519 AAAAother admin\n")
    assert transfer_access.update_authorized_keys(path, "c1", grant(1000), False) == (True, True)
    assert transfer_access.update_authorized_keys(path, "c1", grant(999999), False) == (False, True)
    text = open(path).read()
    assert text.startswith("ssh-ed25519 AAAAother admin\n") and len(re.findall("ferry-transfer:c1", text)) == 1
    assert transfer_access.update_authorized_keys(path, "c1", None, False) == (True, False)
    assert open(path).read() == "ssh-ed25519 AAAAother admin\n"
