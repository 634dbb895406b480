import subprocess

from ansible_collections.ferry.migrate.plugins.lookup.transfer_keypair import LookupModule


def test_pairs_are_fresh_and_match(tmp_path):
    first, = LookupModule().run([])
    second, = LookupModule().run([])
    assert first["private_key"] != second["private_key"]
    # OpenSSH, which uses the key, reads it and derives the same public half.
    path = tmp_path / "key"
    path.write_text(first["private_key"])
    path.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True).stdout
    assert derived.split()[:2] == first["public_key"].split()[:2]
