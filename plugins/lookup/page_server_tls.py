# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: page_server_tls
short_description: Mint one-time TLS credentials for one streamed migration's CRIU page server
version_added: 0.2.0
description:
  - Returns a fresh certificate authority and one certificate it signed, for the address the source
    dials, made in the controller's memory and never written to disk by this plugin. The authority's
    private key is thrown away at once, so nothing else can ever be signed by it.
  - Both hosts of a streamed migration get all three. CRIU's C(--tls) (GnuTLS, TLS 1.3) then makes
    each end prove it holds the key and trust only certificates of this authority, and the source
    checks that the certificate names the address it dialled. The credentials are as secret as the
    one-time SSH key; pass them only to C(no_log) options and store the result with C(no_log).
  - The certificate is valid for one day; a migration takes minutes.
author: Ferry developers (@ferry-migrate)
options:
  _terms:
    description: The target's address as the source dials it, an IP address or a DNS name.
    required: true
    type: list
    elements: str
requirements:
  - cryptography (a dependency of ansible-core)
"""

EXAMPLES = r"""
- name: One set of TLS credentials for this migration's page stream
  ansible.builtin.set_fact:
    page_server_tls: "{{ lookup('ferry.migrate.page_server_tls', '192.0.2.10') }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description: One dictionary.
  type: list
  elements: dict
  contains:
    ca:
      description: The authority's certificate, PEM.
      type: str
    cert:
      description: The certificate for the address, PEM.
      type: str
    key:
      description: The certificate's private key (ECDSA P-256), PEM.
      type: str
"""

import datetime
import ipaddress

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, ca, extensions=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))  # hosts' clocks differ a little
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def subject_alt_name(address):
    try:
        return x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))])
    except ValueError:
        return x509.SubjectAlternativeName([x509.DNSName(address)])


def make_credentials(address):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(_name("ferry one-time page server CA"), _name("ferry one-time page server CA"),
                      ca_key.public_key(), ca_key, ca=True)
    cert = _certificate(_name(address), ca.subject, key.public_key(), ca_key, ca=False,
                        extensions=[subject_alt_name(address)])
    pem = serialization.Encoding.PEM
    return {
        "ca": ca.public_bytes(pem).decode("ascii"),
        "cert": cert.public_bytes(pem).decode("ascii"),
        "key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode("ascii"),
    }


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if not HAS_CRYPTOGRAPHY:
            raise AnsibleLookupError("ferry.migrate.page_server_tls needs the Python package cryptography on the controller")
        if len(terms) != 1 or not isinstance(terms[0], str) or not terms[0].strip():
            raise AnsibleLookupError("ferry.migrate.page_server_tls takes one term: the address the source dials")
        return [make_credentials(terms[0].strip())]
