# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: transfer_keypair
short_description: Mint a one-time Ed25519 key pair for one checkpoint transfer
version_added: 0.1.0
description:
  - Returns a fresh Ed25519 key pair in OpenSSH format, made in the controller's memory and never
    written to disk by this plugin.
  - The public half goes to M(ferry.migrate.transfer_access) on the target, the private half to
    M(ferry.migrate.transfer) on the source, whose O(ferry.migrate.transfer#module:private_key) is
    never logged. Store the result with C(no_log) so it stays out of output too.
author: Ferry developers (@ferry-migrate)
requirements:
  - cryptography (a dependency of ansible-core)
"""

EXAMPLES = r"""
- name: One key pair for this migration
  ansible.builtin.set_fact:
    transfer_key: "{{ lookup('ferry.migrate.transfer_keypair') }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description: One dictionary.
  type: list
  elements: dict
  contains:
    private_key:
      description: The private key, OpenSSH PEM.
      type: str
    public_key:
      description: The public key, C(ssh-ed25519 base64).
      type: str
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False


def make_keypair():
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode("ascii")
    return {"private_key": private, "public_key": public}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if not HAS_CRYPTOGRAPHY:
            raise AnsibleLookupError("ferry.migrate.transfer_keypair needs the Python package cryptography on the controller")
        if terms:
            raise AnsibleLookupError("ferry.migrate.transfer_keypair takes no terms")
        return [make_keypair()]
