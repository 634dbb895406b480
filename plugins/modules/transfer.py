#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: transfer
short_description: Send a checkpoint bundle from this host to the target host over SSH
version_added: 0.1.0
description:
  - Runs on the source host. Streams the bundle C(<images_dir>/<checkpoint_id>) to O(target) through
    the OpenSSH client (C(ssh)), not through the controller. OpenSSH encrypts and authenticates; the
    one-time key's forced command on the target receives the bundle.
  - Connection details come from the inventory, as M(ansible.posix.synchronize) takes them - when
    O(target) (or O(source_address)) is an inventory host name, its address, SSH port and login user
    are those Ansible uses for it (lookup P(ferry.migrate.host_connection#lookup)), unless given here.
  - With O(route=controller), for hosts that cannot reach each other, the controller connects to both
    and relays the bytes through its memory (never its disk), with each host's SSH options from the
    inventory as well (C(ansible_ssh_common_args), C(ansible_ssh_extra_args), so a jump host applies).
    The source needs a sending grant from M(ferry.migrate.transfer_access) with
    O(ferry.migrate.transfer_access#module:direction=send).
  - The target's host key must be one of O(host_keys) or be listed for it in O(known_hosts_file);
    unknown keys are refused (no trust on first use).
  - The receiving end (see M(ferry.migrate.transfer_access)) verifies every file's size and SHA-256
    and makes the bundle appear under its final name only when all match, so a partial transfer never
    looks complete.
  - Idempotent. When the target already holds the same bundle, verified, nothing is sent.
  - The bundle is verified here before sending.
author: Ferry developers (@ferry-migrate)
requirements:
  - OpenSSH client 8.2 or newer on the source host (on the controller with O(route=controller))
options:
  checkpoint_id:
    description: Name of the bundle in O(images_dir).
    type: str
    required: true
  target:
    description: Address of the target host, or its inventory name (then the inventory gives the address, port and user).
    type: str
    required: true
  port:
    description: SSH port of the target; default, the inventory's for an inventory host, else 22.
    type: int
    default: 22
  user:
    description:
      - Login user on the target, for whom the one-time key was authorised; default, the inventory's
        login user for an inventory host, else root.
      - Need not be root. M(ferry.migrate.transfer_access) lets that user's key run the receiver with
        the privilege it needs and nothing else.
    type: str
    default: root
  ssh_args:
    description: Further OpenSSH client arguments for the connection to the target (with O(route=controller), the inventory's).
    type: list
    elements: str
    default: []
  private_key:
    description: OpenSSH private key, as text. Never logged.
    type: str
  private_key_file:
    description: Path of an OpenSSH private key on the source host.
    type: path
  host_keys:
    description: The target's host public keys (C(type base64)), from M(ferry.migrate.transfer_access).
    type: list
    elements: str
  known_hosts_file:
    description: A known_hosts file on the source host that lists the target.
    type: path
  compress:
    description: Compress on the wire with zstd (needs C(zstd) on both hosts); helps compressible memory only.
    type: str
    choices: [none, zstd]
    default: none
  route:
    description:
      - V(direct) sends from the source host to the target.
      - V(controller) relays through the controller, which connects to O(source_address) and O(target).
    type: str
    choices: [direct, controller]
    default: direct
  source_address:
    description: Address the controller reaches the source at. Required with O(route=controller).
    type: str
  source_port:
    description: SSH port of the source, with O(route=controller).
    type: int
    default: 22
  source_user:
    description: Login user on the source, with O(route=controller).
    type: str
    default: root
  source_ssh_args:
    description: Further OpenSSH client arguments for the connection to the source, with O(route=controller).
    type: list
    elements: str
    default: []
  source_host_keys:
    description: The source's host public keys, with O(route=controller).
    type: list
    elements: str
  timeout:
    description: Seconds to wait for the target at any one step.
    type: int
    default: 300
extends_documentation_fragment:
  - ferry.migrate.common.images
attributes:
  check_mode:
    support: full
    description: Connects and asks whether the target holds the bundle; sends nothing.
  action:
    support: full
    description: An action plugin runs O(route=controller) on the controller.
seealso:
  - module: ferry.migrate.transfer_access
  - module: ferry.migrate.checkpoint
"""

EXAMPLES = r"""
- name: Send a checkpoint from node1 to node2 with a one-time key (node2's address, port and user from the inventory)
  ferry.migrate.transfer:
    checkpoint_id: redis-1
    target: node2
    private_key: "{{ transfer_key.private_key }}"
    host_keys: "{{ access.host_keys }}"
  delegate_to: node1

- name: Or with a key and known_hosts already on the source
  ferry.migrate.transfer:
    checkpoint_id: redis-1
    target: node2.example.com
    private_key_file: /root/.ssh/ferry
    known_hosts_file: /root/.ssh/known_hosts

- name: Relay through the controller (node1 cannot reach node2)
  ferry.migrate.transfer:
    checkpoint_id: redis-1
    route: controller
    source_address: node1
    source_host_keys: "{{ source_access.host_keys }}"
    target: node2
    private_key: "{{ transfer_key.private_key }}"
    host_keys: "{{ access.host_keys }}"
  delegate_to: node1
"""

RETURN = r"""
bytes:
  description: Size of the bundle's files.
  returned: always
  type: int
sent_bytes:
  description: Bytes put on the wire (after compression, with framing); 0 when nothing was sent.
  returned: always
  type: int
seconds:
  description: Duration of the exchange.
  returned: always
  type: float
throughput_mib_s:
  description: Bundle MiB per second of transfer; null when nothing was sent.
  returned: always
  type: float
data_path:
  description:
    - How the bytes travelled; null when nothing was sent.
    - V(ssh) is the SSH session from the source, V(controller) the relay.
  returned: always
  type: str
phase:
  description: V(transfer) when it failed.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _transport


def main():
    module = AnsibleModule(argument_spec=_transport.ARGUMENT_SPEC, supports_check_mode=True, **_transport.CONSTRAINTS)
    _transport.run(module)


if __name__ == "__main__":
    main()
