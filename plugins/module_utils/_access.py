# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A checkpoint's transfer grant on a host: what lets the migration's one-time key, and nothing else,
move that one bundle (or join its page link).

A grant is three things, made in this order and removed in the reverse one, so a key never exists
without what it runs: a sudoers rule when the login user is not root (exactly the wire program, for
this checkpoint, as root), the key's line in the user's authorized_keys (restricted, from the source's
address, expiring, its command forced), and the wire program itself (``_wire.py``, one per login user,
kept while any grant in that user's authorized_keys uses it; installed and removed under that file's lock).
"""

from __future__ import annotations

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
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _files, _transport
# Imported so that Ansible ships it with the module: it is installed on this host as the forced command.
from ansible_collections.ferry.migrate.plugins.module_utils import _wire


class AccessError(Exception):
    pass


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


def update_authorized_keys(path, checkpoint_id, wanted, check_mode, owner=None, then=bool):
    """Replace this checkpoint's grant by ``wanted`` (None removes it).

    Returns (changed, ``then(whether any Ferry grant remains)``). Concurrent migrations to this host
    edit the same file, so the edit holds an exclusive lock, and ``then`` runs before it is released:
    what follows from the last grant going (the wire program's removal) cannot undo another migration's
    grant made in between. ``owner`` (a pwd entry) owns a file or directory made here: sshd refuses keys
    in files that their user does not own.
    """
    def edit(lines):
        mine = [line for line in lines if line.endswith(" " + MARK + checkpoint_id)]
        if wanted and len(mine) == 1 and _without_expiry(mine[0]) == _without_expiry(wanted):
            return lines, False, True  # the same grant, only its expiry would move: not a change
        kept = [line for line in lines if line not in mine] + ([wanted] if wanted else [])
        return kept, kept != lines, any(MARK in line for line in kept)

    if check_mode or (not wanted and not os.path.exists(path)):
        with open(path, encoding="utf-8") if os.path.exists(path) else io.StringIO() as handle:
            changed, others = edit(handle.read().splitlines())[1:]
            return changed, then(others)
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
        return changed, then(others)


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


class Grant:
    """This host's grant for one checkpoint, as the transfer_access module's parameters describe it.
    The parameters are checked here, before anything changes; AccessError names the one at fault."""

    def __init__(self, params: dict[str, t.Any], client_address: t.Callable[[], str | None] | None = None):
        try:
            self.checkpoint_id = _bundle.check_id(params["checkpoint_id"])
        except _bundle.BundleError as exc:
            raise AccessError("checkpoint_id: %s" % exc) from None
        # Both paths go into the key's forced command: nothing there may be read as sshd syntax.
        for name in ("images_dir", "python"):
            if not _transport.valid_command_path(params[name]):
                raise AccessError("%s must be an absolute path of [A-Za-z0-9_./-], not %r" % (name, params[name]))
        self.user = user = params["user"]
        if not _transport.valid_user(user):
            raise AccessError("user must be a login name (letters, digits, '_.-'), not %r" % (user,))
        try:
            self.owner = pwd.getpwnam(user)
        except KeyError:
            raise AccessError("user %s does not exist on this host" % user) from None
        present = params["state"] == "present"
        if user != "root" and present and not shutil.which("sudo", path="/usr/bin:/bin:/usr/sbin:/sbin"):
            raise AccessError("user %s is not root, and this host has no sudo to run the transfer as root with" % user)
        self.authorized_keys = params["authorized_keys"] or os.path.join(self.owner.pw_dir, ".ssh", "authorized_keys")
        self.images_dir = params["images_dir"]
        # One program per login user, as the grants that keep it are per user's authorized_keys: one user's
        # last grant going cannot take the program another user's grant runs.
        self.program = os.path.join(self.images_dir, ".ferry-wire-%s.py" % user)
        command = forced_command(params["python"], self.program, params["direction"], self.images_dir, self.checkpoint_id, user)
        self.line = self.rule = None
        if present:
            parts = params["public_key"].split()[:2]
            if len(parts) != 2 or not _transport.valid_host_key(*parts):
                raise AccessError("public_key must be an OpenSSH public key such as 'ssh-ed25519 AAAA...'")
            address = params["source_address"] or (client_address or ssh_client_address)()
            if not address:
                raise AccessError("source_address is required: this module does not run over SSH, so the controller's address is unknown")
            try:
                source = str(ipaddress.ip_address(address))
            except ValueError:
                raise AccessError("source_address must be an IP address, not %r" % address) from None
            if params["expires_in"] < 60:
                raise AccessError("expires_in must be at least 60 seconds, not %d" % params["expires_in"])
            self.line = grant_line(" ".join(parts), source, command, self.checkpoint_id, time.time() + params["expires_in"])
            self.rule = sudoers_rule(user, command, self.checkpoint_id) if user != "root" else None

    def apply(self, check_mode: bool, diff: bool) -> dict[str, t.Any]:
        """Make this host's grant what the parameters say; the module's result."""
        try:
            before = {"keys": current_grant(self.authorized_keys, self.checkpoint_id),
                      "sudoers": current_rule(self.checkpoint_id)} if diff else {}
            # The privilege first, the key that uses it last; on removal the key goes first.
            changed_rule = update_sudoers(self.checkpoint_id, self.rule, check_mode) if self.rule else False
            changed_keys, changed_program = update_authorized_keys(self.authorized_keys, self.checkpoint_id, self.line, check_mode,
                                                                   self.owner, then=lambda others: self._program(others, check_mode))
            if not self.rule:
                changed_rule = update_sudoers(self.checkpoint_id, None, check_mode) or changed_rule
        except OSError as exc:
            raise AccessError("cannot write the grant for %s: %s" % (self.checkpoint_id, exc)) from None
        result = dict(changed=changed_rule or changed_keys or changed_program, program=self.program)
        if diff:
            # The key is public and the command is Ferry's own: nothing here is secret.
            result["diff"] = [
                dict(before_header=self.authorized_keys, after_header=self.authorized_keys, before=before["keys"],
                     after=(self.line + "\n" if self.line else "") if changed_keys else before["keys"]),
                dict(before_header=sudoers_path(self.checkpoint_id), after_header=sudoers_path(self.checkpoint_id),
                     before=before["sudoers"], after=(self.rule or "") if changed_rule else before["sudoers"]),
            ]
        if self.line:
            result["host_keys"] = host_keys()
        return result

    def _program(self, wanted: bool, check_mode: bool) -> bool:
        """The wire program, there while any grant uses it; whether installing it changes the host.
        Removing it when the last grant goes is cleanup, not a change of its own."""
        code = pkgutil.get_data(_wire.__name__.rsplit(".", 1)[0], "_wire.py")
        current = None
        if os.path.exists(self.program):
            with open(self.program, "rb") as handle:
                current = handle.read()
        if wanted and current != code:
            if not check_mode:
                _bundle.make_private_dir(self.images_dir)
                _files.write_atomic(self.program, code, 0o700)
            return True
        if not wanted and current is not None and not check_mode:
            os.unlink(self.program)
        return False


def run(module: t.Any) -> None:
    try:
        module.exit_json(**Grant(module.params).apply(module.check_mode, module._diff))
    except AccessError as exc:
        module.fail_json(msg=str(exc))
