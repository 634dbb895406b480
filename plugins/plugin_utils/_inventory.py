# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How Ansible reaches an inventory host, so that Ferry's own SSH sessions go where Ansible goes.

The ssh connection plugin's own option definitions decide which variable wins (``ansible_host`` over
``ansible_ssh_host``, ``ansible_port``, ``ansible_user``, the SSH arguments, ansible.cfg and the
environment), as ``ansible.posix.synchronize`` reads them; what the inventory leaves open (the login
user, a ``Host`` block of ~/.ssh/config) OpenSSH itself resolves with ``ssh -G``.
"""

from __future__ import annotations

import getpass
import shlex
import subprocess
import typing as t

from ansible import constants as C
from ansible.plugins.loader import connection_loader

# Connections that run a task somewhere other than the controller, reached through an SSH server.
SSH_CONNECTIONS = ("ssh", "ansible.builtin.ssh", "paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh", "smart")


class InventoryError(Exception):
    pass


def host_connection(name: str, hostvars: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """{name, host, port, user, ssh_args} for inventory host ``name``; InventoryError naming it when it
    is not an inventory host, or is reached without SSH (a fleet host never runs tasks on the controller)."""
    if not isinstance(name, str) or name not in hostvars:
        raise InventoryError("%r is not a host of the inventory (check its spelling, or add it)" % (name,))
    host_vars = hostvars[name]
    connection = host_vars.get("ansible_connection") or "ssh"
    if connection not in SSH_CONNECTIONS:
        raise InventoryError("%s is reached with ansible_connection=%s: Ferry moves containers between hosts it "
                             "reaches over SSH" % (name, connection))
    connection_loader.get("ssh", class_only=True)  # loads the plugin's option definitions
    options = C.config.get_plugin_options("connection", "ssh", variables=host_vars)
    ssh_args = shlex.split(options.get("ssh_common_args") or "") + shlex.split(options.get("ssh_extra_args") or "")
    host = options.get("host") or name
    if host == "inventory_hostname" or host.startswith("{{"):
        host = name
    resolved = _openssh_view(host, options.get("port"), options.get("remote_user"), ssh_args)
    return dict(name=name, host=resolved.get("hostname", host), port=int(resolved.get("port") or options.get("port") or 22),
                user=resolved.get("user") or options.get("remote_user") or getpass.getuser(), ssh_args=ssh_args)


def _openssh_view(host: str, port: t.Any, user: str | None, ssh_args: list[str]) -> dict[str, str]:
    """What OpenSSH would use for this host (``ssh -G``): ~/.ssh/config fills what the inventory leaves open."""
    argv = ["ssh", "-G"] + (["-p", str(port)] if port else []) + (["-l", user] if user else []) + ssh_args + ["--", host]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if proc.returncode != 0:
        return {}
    seen = {}
    for line in proc.stdout.splitlines():
        key, _sep, value = line.partition(" ")
        if key in ("hostname", "port", "user") and key not in seen:
            seen[key] = value.strip()
    return seen
