#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: transfer_access
short_description: Let one peer deliver (or fetch) one checkpoint on this host, once
version_added: 0.1.0
description:
  - Runs on the target of a migration. With O(state=present), authorises O(public_key) for the SSH
    login of O(user), restricted to connections from O(source_address), with no terminal, no forwarding
    and a forced command that can only receive the bundle O(checkpoint_id) into O(images_dir) (it
    verifies every file's size and SHA-256 and makes the bundle appear atomically), or join that
    checkpoint's page link (M(ferry.migrate.page_link)).
  - O(user) is the login user Ansible itself uses for this host; root logins need not be enabled. For
    a user other than root, the forced command runs the receiver through C(sudo -n), and a sudoers
    drop-in C(/etc/sudoers.d/zz-ferry-<digest>) lets that user run exactly that one command as root,
    without a password (checked with C(visudo) before it takes effect; read last, so that no broader
    rule asking for a password overrides it). Both go with O(state=absent).
  - With O(direction=send), runs on the source instead and the forced command can only hand out that
    bundle, for a transfer relayed by the controller (P(ferry.migrate.transfer#module) with
    O(ferry.migrate.transfer#module:route=controller)).
  - Returns this host's SSH host public keys, read from the host itself, so the source can pin them.
  - With O(state=absent), removes the authorisation, and the program once no authorisation of O(user) is
    left (the program, C(.ferry-wire-<user>.py) in O(images_dir), is one per login user).
  - Check mode reports whether the grant, the sudoers rule or the program would change.
  - No standing trust between hosts is needed; the migrate role mints a key pair per migration with
    lookup P(ferry.migrate.transfer_keypair#lookup) and removes its authorisation afterwards.
author: Ferry developers (@ferry-migrate)
options:
  checkpoint_id:
    description: The one bundle the key may deliver.
    type: str
    required: true
  state:
    description: Whether the authorisation exists.
    type: str
    choices: [present, absent]
    default: present
  public_key:
    description: OpenSSH public key (C(type base64)) to authorise. Required with O(state=present).
    type: str
  direction:
    description: Whether the key may V(receive) the bundle here or V(send) it from here.
    type: str
    choices: [receive, send]
    default: receive
  source_address:
    description:
      - IP address the peer connects from; connections from anywhere else are refused.
      - Default, the client address of the SSH connection this module runs over (through C(become)
        too), which is the peer of a relayed transfer - the controller, or the jump host it comes
        through. Give the source host's address for a direct one.
    type: str
  user:
    description:
      - The login user the peer connects as (the inventory's C(ansible_user) for this host), in whose
        authorized_keys the grant is; lookup P(ferry.migrate.host_connection#lookup) gives it.
      - Required, and given again with O(state=absent), so that the grant is removed where it was made.
    type: str
    required: true
  authorized_keys:
    description: The authorized_keys file of O(user); default, C(~/.ssh/authorized_keys) in its home.
    type: path
  expires_in:
    description:
      - Seconds after which sshd refuses the key even if it was never removed (OpenSSH C(expiry-time)).
      - The migrate role removes the key as soon as the transfer is over; this is the safety net for a
        target that was unreachable at that moment.
    type: int
    default: 3600
  python:
    description: Interpreter that runs the forced command.
    type: path
    default: /usr/bin/python3
extends_documentation_fragment:
  - ferry.migrate.common.images
attributes:
  check_mode:
    support: full
    description: Reports whether the authorisation would change.
  diff_mode:
    support: full
    description: This checkpoint's line of authorized_keys and its sudoers drop-in, before and after.
seealso:
  - module: ferry.migrate.transfer
"""

EXAMPLES = r"""
- name: Mint a one-time key on the controller
  ansible.builtin.set_fact:
    transfer_key: "{{ lookup('ferry.migrate.transfer_keypair') }}"
  no_log: true

- name: Let node1 deliver checkpoint redis-1 to node2
  ferry.migrate.transfer_access:
    checkpoint_id: redis-1
    public_key: "{{ transfer_key.public_key }}"
    source_address: 10.199.0.11
    user: "{{ (query('ferry.migrate.host_connection', 'node2') | first).user }}"
  delegate_to: node2
  register: access
"""

RETURN = r"""
host_keys:
  description: This host's SSH host public keys (C(type base64)), to pin on the source.
  returned: state=present
  type: list
  elements: str
program:
  description: Path of the program the key runs (the wire protocol's end, stdlib Python).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _access


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checkpoint_id=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            public_key=dict(type="str"),
            direction=dict(type="str", choices=["receive", "send"], default="receive"),
            source_address=dict(type="str"),
            images_dir=dict(type="path", default="/var/lib/ferry"),
            user=dict(type="str", required=True),
            authorized_keys=dict(type="path"),
            python=dict(type="path", default="/usr/bin/python3"),
            expires_in=dict(type="int", default=3600),
        ),
        required_if=[("state", "present", ("public_key",))],
        supports_check_mode=True,
    )
    _access.run(module)


if __name__ == "__main__":
    main()
