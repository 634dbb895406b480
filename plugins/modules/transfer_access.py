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
  - Runs on the target of a migration. With O(state=present), authorises O(public_key) for root's SSH
    login restricted to connections from O(source_address), with no terminal, no forwarding and a
    forced command that can only receive the bundle O(checkpoint_id) into O(images_dir) (it verifies
    every file's size and SHA-256 and makes the bundle appear atomically).
  - With O(direction=send), runs on the source instead and the forced command can only hand out that
    bundle, for a transfer relayed by the controller (P(ferry.migrate.transfer#module) with
    O(ferry.migrate.transfer#module:route=controller)).
  - Returns this host's SSH host public keys, read from the host itself, so the source can pin them.
  - With O(state=absent), removes the authorisation (and the program once no authorisation is left).
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
      - Default, the address of the SSH connection this module runs over, that is the controller's,
        which is the peer of a relayed transfer. Give the source host's address for a direct one.
    type: str
  authorized_keys:
    description: The authorized_keys file of the login user.
    type: path
    default: /root/.ssh/authorized_keys
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

import fcntl
import glob
import io
import ipaddress
import os
import pkgutil
import re
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle
# Imported so that Ansible ships it with this module: it is installed on this host as the forced command.
from ansible_collections.ferry.migrate.plugins.module_utils import _wire

_PUBLIC_KEY = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,3}\Z")
MARK = "ferry-transfer:"
_EXPIRY = re.compile(r'expiry-time="[0-9]+Z",')


def grant_line(public_key, source_address, python, program, direction, images_dir, checkpoint_id, expires_at):
    command = "%s %s %s %s %s" % (python, program, direction, images_dir, checkpoint_id)
    expiry = time.strftime("%Y%m%d%H%MZ", time.gmtime(expires_at))
    return 'from="%s",restrict,expiry-time="%s",command="%s" %s %s%s' % (source_address, expiry, command, public_key, MARK, checkpoint_id)


def _without_expiry(line):
    return _EXPIRY.sub("", line) if line else line


def host_keys():
    keys = []
    for path in sorted(glob.glob("/etc/ssh/ssh_host_*_key.pub")):
        with open(path, encoding="ascii") as handle:
            parts = handle.read().split()
        if len(parts) >= 2:
            keys.append("%s %s" % (parts[0], parts[1]))
    return keys


def update_authorized_keys(path, checkpoint_id, wanted, check_mode):
    """Replace this checkpoint's grant by ``wanted`` (None removes it).

    Returns (changed, whether any Ferry grant remains). Concurrent migrations to this host edit the
    same file, so the edit holds an exclusive lock.
    """
    def edit(lines):
        mine = [line for line in lines if line.endswith(" " + MARK + checkpoint_id)]
        if wanted and len(mine) == 1 and _without_expiry(mine[0]) == _without_expiry(wanted):
            return lines, False, True  # the same grant, only its expiry would move: not a change
        kept = [line for line in lines if line not in mine] + ([wanted] if wanted else [])
        return kept, kept != lines, any(MARK in line for line in kept)

    if check_mode:
        with open(path, encoding="utf-8") if os.path.exists(path) else io.StringIO() as handle:
            return edit(handle.read().splitlines())[1:]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        kept, changed, others = edit(handle.read().splitlines())
        if changed:
            handle.seek(0)
            handle.truncate()
            handle.write("".join(line + "\n" for line in kept))
    return changed, others


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checkpoint_id=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            public_key=dict(type="str"),
            direction=dict(type="str", choices=["receive", "send"], default="receive"),
            source_address=dict(type="str"),
            images_dir=dict(type="path", default="/var/lib/ferry"),
            authorized_keys=dict(type="path", default="/root/.ssh/authorized_keys"),
            python=dict(type="path", default="/usr/bin/python3"),
            expires_in=dict(type="int", default=3600),
        ),
        required_if=[("state", "present", ("public_key",))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        checkpoint_id = _bundle.check_id(params["checkpoint_id"])
    except _bundle.BundleError as exc:
        module.fail_json(msg="checkpoint_id: %s" % exc)
    # Both paths go into the key's forced command: nothing there may be read as sshd syntax.
    for name in ("images_dir", "python"):
        if not re.match(r"^/[A-Za-z0-9_./-]+\Z", params[name]) or ".." in params[name].split("/"):
            module.fail_json(msg="%s must be an absolute path of [A-Za-z0-9_./-], not %r" % (name, params[name]))
    images_dir = params["images_dir"]
    program = os.path.join(images_dir, ".ferry-wire.py")
    wanted = None
    if params["state"] == "present":
        public_key = " ".join(params["public_key"].split()[:2])
        if not _PUBLIC_KEY.match(public_key):
            module.fail_json(msg="public_key must be an OpenSSH public key such as 'ssh-ed25519 AAAA...'")
        address = params["source_address"] or os.environ.get("SSH_CONNECTION", "").split(" ")[0]
        if not address:
            module.fail_json(msg="source_address is required: this module does not run over SSH, so the controller's address is unknown")
        try:
            source = str(ipaddress.ip_address(address))
        except ValueError:
            module.fail_json(msg="source_address must be an IP address, not %r" % address)
        if params["expires_in"] < 60:
            module.fail_json(msg="expires_in must be at least 60 seconds, not %d" % params["expires_in"])
        wanted = grant_line(public_key, source, params["python"], program, params["direction"], images_dir, checkpoint_id,
                            time.time() + params["expires_in"])

    changed, others = update_authorized_keys(params["authorized_keys"], checkpoint_id, wanted, module.check_mode)

    code = pkgutil.get_data(_wire.__name__.rsplit(".", 1)[0], "_wire.py")
    if not module.check_mode:
        _bundle.make_private_dir(images_dir)
        if others:
            current = open(program, "rb").read() if os.path.exists(program) else None
            if current != code:
                with open(os.open(program + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700), "wb") as out:
                    out.write(code)
                os.replace(program + ".tmp", program)
                changed = True
        elif os.path.exists(program):
            os.unlink(program)
    result = dict(changed=changed, program=program)
    if params["state"] == "present":
        result["host_keys"] = host_keys()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
