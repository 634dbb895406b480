#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: transfer
short_description: Send a checkpoint bundle straight from this host to the target host over SSH
version_added: 0.1.0
description:
  - Runs on the source host. Streams the bundle C(<images_dir>/<checkpoint_id>) to O(target) with
    paramiko, not through the controller.
  - The target's host key must be one of O(host_keys) or be listed for it in O(known_hosts_file);
    unknown keys are refused (no trust on first use).
  - The receiving end (see M(ferry.migrate.transfer_access)) verifies every file's size and SHA-256
    and makes the bundle appear under its final name only when all match, so a partial transfer never
    looks complete.
  - Idempotent. When the target already holds the same bundle, verified, nothing is sent.
  - The bundle is verified here before sending.
author: Ferry developers (@ferry-migrate)
requirements:
  - paramiko on the source host (3.0 or newer for AES-GCM, which is the fastest cipher)
options:
  checkpoint_id:
    description: Name of the bundle in O(images_dir).
    type: str
    required: true
  target:
    description: Address of the target host.
    type: str
    required: true
  port:
    description: SSH port of the target.
    type: int
    default: 22
  user:
    description: Login user on the target.
    type: str
    default: root
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
seealso:
  - module: ferry.migrate.transfer_access
  - module: ferry.migrate.checkpoint
"""

EXAMPLES = r"""
- name: Send a checkpoint from node1 to node2 with a one-time key
  ferry.migrate.transfer:
    checkpoint_id: redis-1
    target: 10.199.0.12
    private_key: "{{ transfer_key.private_key }}"
    host_keys: "{{ access.host_keys }}"
  delegate_to: node1

- name: Or with a key and known_hosts already on the source
  ferry.migrate.transfer:
    checkpoint_id: redis-1
    target: node2.example.com
    private_key_file: /root/.ssh/ferry
    known_hosts_file: /root/.ssh/known_hosts
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
cipher:
  description: The SSH cipher negotiated.
  returned: always
  type: str
phase:
  description: V(transfer) when it failed.
  returned: failure
  type: str
"""

import socket

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _engines, _transport


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checkpoint_id=dict(type="str", required=True),
            target=dict(type="str", required=True),
            port=dict(type="int", default=22),
            user=dict(type="str", default="root"),
            private_key=dict(type="str", no_log=True),
            private_key_file=dict(type="path"),
            host_keys=dict(type="list", elements="str", no_log=False),
            known_hosts_file=dict(type="path"),
            compress=dict(type="str", choices=["none", "zstd"], default="none"),
            images_dir=dict(type="path", default="/var/lib/ferry"),
            timeout=dict(type="int", default=300),
        ),
        required_one_of=[("private_key", "private_key_file"), ("host_keys", "known_hosts_file")],
        mutually_exclusive=[("private_key", "private_key_file")],
        supports_check_mode=True,
    )
    if not _transport.HAS_PARAMIKO:
        module.fail_json(msg=missing_required_lib("paramiko"), exception=str(_transport.PARAMIKO_IMPORT_ERROR))
    params = module.params
    if not 0 < params["port"] < 65536:
        module.fail_json(msg="port must be 1 to 65535, not %d" % params["port"])
    try:
        _bundle.check_id(params["checkpoint_id"])
    except _bundle.BundleError as exc:
        module.fail_json(msg="checkpoint_id: %s" % exc)
    path, manifest = _engines.bundle_manifest(module, params["images_dir"], params["checkpoint_id"])
    size = _bundle.total_bytes(manifest)
    try:
        pins = _transport.pinned_keys(params["target"], params["port"], params["host_keys"], params["known_hosts_file"])
        pkey = _transport.load_private_key(params["private_key"], params["private_key_file"])
        transport = _transport.connect(params["target"], params["port"], params["user"], pkey, pins, params["timeout"])
        try:
            cipher = transport.remote_cipher
            sent = _transport.send_bundle(transport, path, manifest, params["compress"], module.check_mode, params["timeout"])
        finally:
            transport.close()
    except (_transport.TransportError, _transport.paramiko.SSHException, socket.error, ValueError) as exc:
        _engines.fail(module, "transfer", exc)
    moved = not sent["have"]
    throughput = round(size / 1048576.0 / sent["seconds"], 1) if moved and sent["seconds"] and not module.check_mode else None
    module.exit_json(changed=moved, bytes=size, sent_bytes=sent["sent_bytes"], seconds=sent["seconds"],
                     throughput_mib_s=throughput, cipher=cipher)


if __name__ == "__main__":
    main()
