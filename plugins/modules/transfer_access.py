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
  - With O(state=absent), removes the authorisation (and the program once no authorisation is left).
  - Diff mode is not supported; check mode reports whether the grant, the sudoers rule or the program would change.
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
    description: The login user the peer connects as (the inventory's C(ansible_user) for this host).
    type: str
    default: root
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
import hashlib
import io
import ipaddress
import os
import pkgutil
import pwd
import re
import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _files, _transport
# Imported so that Ansible ships it with this module: it is installed on this host as the forced command.
from ansible_collections.ferry.migrate.plugins.module_utils import _wire

MARK = "ferry-transfer:"
_EXPIRY = re.compile(r'expiry-time="[0-9]+Z",')
SUDOERS_DIR = "/etc/sudoers.d"


def forced_command(python, program, direction, images_dir, checkpoint_id, user):
    """What the key may run: the wire program for one bundle; through sudo for a login user that is not root."""
    command = "%s %s %s %s %s" % (python, program, direction, images_dir, checkpoint_id)
    return command if user == "root" else "sudo -n " + command


def grant_line(public_key, source_address, command, checkpoint_id, expires_at):
    expiry = time.strftime("%Y%m%d%H%MZ", time.gmtime(expires_at))
    return 'from="%s",restrict,expiry-time="%s",command="%s" %s %s%s' % (source_address, expiry, command, public_key, MARK, checkpoint_id)


def sudoers_rule(user, command, checkpoint_id):
    """A sudoers drop-in letting ``user`` run exactly the receiver (or sender) of one checkpoint as root.

    Every token is [A-Za-z0-9_./-] (checked by the caller): nothing in it is sudoers syntax.
    """
    alias = "FERRY_" + hashlib.sha256(checkpoint_id.encode()).hexdigest()[:16].upper()
    return ("# Ferry: %s may run the transfer of checkpoint %s as root, with its one-time SSH key; removed with the grant.\n"
            "Cmnd_Alias %s = %s\nDefaults!%s !requiretty\n%s ALL = (root) NOPASSWD: %s\n"
            % (user, checkpoint_id, alias, command[len("sudo -n "):], alias, user, alias))


def sudoers_path(checkpoint_id):
    # sudo skips drop-ins whose name has a dot: a checkpoint id may have one, a digest has none. The last
    # rule that matches wins, and drop-ins are read in the order of their names: this one comes last.
    return os.path.join(SUDOERS_DIR, "zz-ferry-" + hashlib.sha256(checkpoint_id.encode()).hexdigest()[:16])


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


def ssh_client_address():
    """The client address of the SSH session this module runs under.

    ``become`` (sudo, su) clears SSH_CONNECTION from the environment, so the processes above this one,
    up to the login shell that sshd started, are asked too.
    """
    pid = os.getpid()
    while pid > 1:
        try:
            with open("/proc/%d/environ" % pid, "rb") as handle:
                environ = handle.read().split(b"\0")
            with open("/proc/%d/stat" % pid, "rb") as handle:
                parent = int(handle.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        for item in environ:
            if item.startswith(b"SSH_CONNECTION="):
                parts = item.split(b"=", 1)[1].decode("ascii", "replace").split()
                return parts[0] if len(parts) == 4 else None
        pid = parent
    return None


def update_authorized_keys(path, checkpoint_id, wanted, check_mode, owner=None):
    """Replace this checkpoint's grant by ``wanted`` (None removes it).

    Returns (changed, whether any Ferry grant remains). Concurrent migrations to this host edit the
    same file, so the edit holds an exclusive lock. ``owner`` (a pwd entry) owns a file or directory
    made here: sshd refuses keys in files that their user does not own.
    """
    def edit(lines):
        mine = [line for line in lines if line.endswith(" " + MARK + checkpoint_id)]
        if wanted and len(mine) == 1 and _without_expiry(mine[0]) == _without_expiry(wanted):
            return lines, False, True  # the same grant, only its expiry would move: not a change
        kept = [line for line in lines if line not in mine] + ([wanted] if wanted else [])
        return kept, kept != lines, any(MARK in line for line in kept)

    if check_mode or (not wanted and not os.path.exists(path)):
        with open(path, encoding="utf-8") if os.path.exists(path) else io.StringIO() as handle:
            return edit(handle.read().splitlines())[1:]
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700)
        if owner:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
    created = not os.path.exists(path)
    with open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600), "r+", encoding="utf-8") as handle:
        if created and owner:
            os.fchown(handle.fileno(), owner.pw_uid, owner.pw_gid)
        fcntl.flock(handle, fcntl.LOCK_EX)
        kept, changed, others = edit(handle.read().splitlines())
        if changed:
            handle.seek(0)
            handle.truncate()
            handle.write("".join(line + "\n" for line in kept))
    return changed, others


def current_grant(path, checkpoint_id):
    """This checkpoint's lines of ``path`` as they are, for diff mode."""
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        return "".join(line for line in handle if line.rstrip("\n").endswith(" " + MARK + checkpoint_id))


def current_rule(checkpoint_id):
    path = sudoers_path(checkpoint_id)
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def update_sudoers(checkpoint_id, wanted, check_mode):
    """Write (or, with None, remove) this checkpoint's sudoers drop-in; returns whether it changed."""
    path = sudoers_path(checkpoint_id)
    current = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
    if current == wanted:
        return False
    if check_mode:
        return True
    if wanted is None:
        os.unlink(path)
        return True

    def visudo(temporary):
        program = shutil.which("visudo", path="/usr/sbin:/usr/bin:/sbin:/bin")
        if program:
            check = subprocess.run([program, "-c", "-q", "-f", temporary], capture_output=True, text=True, check=False)
            if check.returncode != 0:
                raise OSError("visudo refused the rule for %s: %s" % (checkpoint_id, (check.stderr or check.stdout).strip()))

    # sudo ignores names with a dot, such as the temporary file's, while it is written and checked.
    _files.write_atomic(path, wanted, 0o440, check=visudo)
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checkpoint_id=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            public_key=dict(type="str"),
            direction=dict(type="str", choices=["receive", "send"], default="receive"),
            source_address=dict(type="str"),
            images_dir=dict(type="path", default="/var/lib/ferry"),
            user=dict(type="str", default="root"),
            authorized_keys=dict(type="path"),
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
        if not _transport.valid_command_path(params[name]):
            module.fail_json(msg="%s must be an absolute path of [A-Za-z0-9_./-], not %r" % (name, params[name]))
    user = params["user"]
    if not _transport.valid_user(user):
        module.fail_json(msg="user must be a login name (letters, digits, '_.-'), not %r" % (user,))
    try:
        owner = pwd.getpwnam(user)
    except KeyError:
        module.fail_json(msg="user %s does not exist on this host" % user)
    if user != "root" and params["state"] == "present" and not shutil.which("sudo", path="/usr/bin:/bin:/usr/sbin:/sbin"):
        module.fail_json(msg="user %s is not root, and this host has no sudo to run the transfer as root with" % user)
    authorized_keys = params["authorized_keys"] or os.path.join(owner.pw_dir, ".ssh", "authorized_keys")
    images_dir = params["images_dir"]
    program = os.path.join(images_dir, ".ferry-wire.py")
    command = forced_command(params["python"], program, params["direction"], images_dir, checkpoint_id, user)
    wanted = rule = None
    if params["state"] == "present":
        parts = params["public_key"].split()[:2]
        public_key = " ".join(parts)
        if len(parts) != 2 or not _transport.valid_host_key(*parts):
            module.fail_json(msg="public_key must be an OpenSSH public key such as 'ssh-ed25519 AAAA...'")
        address = params["source_address"] or ssh_client_address()
        if not address:
            module.fail_json(msg="source_address is required: this module does not run over SSH, so the controller's address is unknown")
        try:
            source = str(ipaddress.ip_address(address))
        except ValueError:
            module.fail_json(msg="source_address must be an IP address, not %r" % address)
        if params["expires_in"] < 60:
            module.fail_json(msg="expires_in must be at least 60 seconds, not %d" % params["expires_in"])
        wanted = grant_line(public_key, source, command, checkpoint_id, time.time() + params["expires_in"])
        rule = sudoers_rule(user, command, checkpoint_id) if user != "root" else None

    if module._diff:
        before = {"keys": current_grant(authorized_keys, checkpoint_id), "sudoers": current_rule(checkpoint_id)}
    try:
        # The privilege first, the key that uses it last; on removal the key goes first.
        changed_rule = update_sudoers(checkpoint_id, rule, module.check_mode) if rule else False
        changed_keys, others = update_authorized_keys(authorized_keys, checkpoint_id, wanted, module.check_mode, owner)
        if not rule:
            changed_rule = update_sudoers(checkpoint_id, None, module.check_mode) or changed_rule
    except OSError as exc:
        module.fail_json(msg="cannot write the grant for %s: %s" % (checkpoint_id, exc))
    changed = changed_rule or changed_keys

    code = pkgutil.get_data(_wire.__name__.rsplit(".", 1)[0], "_wire.py")
    current = open(program, "rb").read() if os.path.exists(program) else None
    if others and current != code:
        changed = True
        if not module.check_mode:
            _bundle.make_private_dir(images_dir)
            _files.write_atomic(program, code, 0o700)
    elif not others and current is not None and not module.check_mode:
        os.unlink(program)
    result = dict(changed=changed, program=program)
    if module._diff:
        # The key is public and the command is Ferry's own: nothing here is secret.
        result["diff"] = [
            dict(before_header=authorized_keys, after_header=authorized_keys, before=before["keys"],
                 after=(wanted + "\n" if wanted else "") if changed_keys else before["keys"]),
            dict(before_header=sudoers_path(checkpoint_id), after_header=sudoers_path(checkpoint_id), before=before["sudoers"],
                 after=(rule or "") if changed_rule else before["sudoers"]),
        ]
    if params["state"] == "present":
        result["host_keys"] = host_keys()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
