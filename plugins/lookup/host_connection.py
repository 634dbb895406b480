# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: host_connection
short_description: How Ansible reaches inventory hosts over SSH (address, port, login user, SSH options)
version_added: 0.1.0
description:
  - For each inventory host name, the connection details Ansible itself would use, resolved with the
    ssh connection plugin's own precedence (C(ansible_host), C(ansible_port), C(ansible_user), their
    C(ansible_ssh_*) forms, ansible.cfg, the environment) and, for what the inventory leaves open
    (the login user, a C(Host) block in C(~/.ssh/config)), with OpenSSH's C(ssh -G).
  - The migrate role uses it so that transfers go where Ansible goes, and to refuse, before anything
    changes, a host that is not in the inventory or is reached without SSH.
  - C(ssh_args) are C(ansible_ssh_common_args) and C(ansible_ssh_extra_args), where a jump host
    (C(ProxyJump), C(ProxyCommand)) is given; C(ansible_ssh_args) (multiplexing, compression) is left out.
author: Ferry developers (@ferry-migrate)
options:
  _terms:
    description: Inventory host names.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Where the target is, as Ansible reaches it
  ansible.builtin.debug:
    msg: "{{ lookup('ferry.migrate.host_connection', 'db2') }}"
"""

RETURN = r"""
_raw:
  description: One dictionary per host.
  type: list
  elements: dict
  contains:
    name:
      description: The inventory name.
      type: str
    host:
      description: The address or DNS name SSH connects to.
      type: str
    port:
      description: The SSH port.
      type: int
    user:
      description: The login user.
      type: str
    ssh_args:
      description: Extra OpenSSH arguments from the inventory, as a list.
      type: list
      elements: str
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.ferry.migrate.plugins.plugin_utils import _inventory


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        hostvars = (variables or {}).get("hostvars", {})
        found = []
        for name in terms:
            try:
                found.append(_inventory.host_connection(name, hostvars))
            except _inventory.InventoryError as exc:
                raise AnsibleLookupError(str(exc)) from None
        return found
