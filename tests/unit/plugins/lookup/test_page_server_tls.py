"""One-time TLS credentials for a stream's CRIU page server, checked by openssl as GnuTLS would check
them: the certificate chains to the one-time authority and names the address the source dials."""
import subprocess

import pytest

from ansible.errors import AnsibleLookupError
from ansible_collections.ferry.migrate.plugins.lookup.page_server_tls import LookupModule


def verify(tmp_path, credentials, name, flag):
    for key, text in credentials.items():
        (tmp_path / (key + ".pem")).write_text(text)
    return subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), flag, name, str(tmp_path / "cert.pem")],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("address, flag", [("192.0.2.12", "-verify_ip"), ("2001:db8::12", "-verify_ip"),
                                           ("node2.example.org", "-verify_hostname")])
def test_the_certificate_names_the_address_and_chains_to_the_authority(tmp_path, address, flag):
    credentials, = LookupModule().run([address])
    assert verify(tmp_path, credentials, address, flag).returncode == 0
    wrong = "192.0.2.13" if flag == "-verify_ip" else "other.example.org"
    assert verify(tmp_path, credentials, wrong, flag).returncode != 0


def test_each_migration_has_its_own_authority(tmp_path):
    first, = LookupModule().run(["192.0.2.12"])
    second, = LookupModule().run(["192.0.2.12"])
    assert first["key"] != second["key"]
    # A certificate of another migration's authority is not trusted.
    mixed = dict(first, cert=second["cert"], key=second["key"])
    assert verify(tmp_path, mixed, "192.0.2.12", "-verify_ip").returncode != 0


def test_the_key_matches_the_certificate(tmp_path):
    credentials, = LookupModule().run(["192.0.2.12"])
    (tmp_path / "key.pem").write_text(credentials["key"])
    (tmp_path / "cert.pem").write_text(credentials["cert"])
    from_key = subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "key.pem"), "-pubout"], capture_output=True, text=True, check=True)
    from_cert = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "cert.pem"), "-pubkey", "-noout"],
                               capture_output=True, text=True, check=True)
    assert from_key.stdout == from_cert.stdout


@pytest.mark.parametrize("terms", [[], ["a", "b"], [""]])
def test_it_takes_exactly_one_address(terms):
    with pytest.raises(AnsibleLookupError, match="one term: the address the source dials"):
        LookupModule().run(terms)
