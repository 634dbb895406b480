import io

import paramiko

from ansible_collections.ferry.migrate.plugins.lookup.transfer_keypair import LookupModule


def test_pairs_are_fresh_and_match():
    first, = LookupModule().run([])
    second, = LookupModule().run([])
    assert first["private_key"] != second["private_key"]
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(first["private_key"]))
    assert first["public_key"] == "ssh-ed25519 " + key.get_base64()
