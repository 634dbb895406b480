# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: identifier
short_description: Whether a value is a valid Ferry identifier of a given kind
version_added: 0.1.0
description:
  - The very rules Ferry's modules apply to their options, so that a role can refuse bad input in its
    preflight, before anything is granted, frozen or written.
options:
  _input:
    description: The value to check.
    type: raw
    required: true
  kind:
    description:
      - V(checkpoint_id) names a bundle directory (1-128 of C([A-Za-z0-9_.-]), starting with a letter or digit, no C(..)).
      - V(container_name) is a container name or ID (1-253 of C([A-Za-z0-9_.-]), starting with a letter or digit).
      - V(path) is an absolute path of C([A-Za-z0-9_./-]) without C(..) (it goes into a forced SSH command).
      - V(login_user) is a login name (lower-case letters, digits, C(_.-), at most 32).
    type: str
    choices: [checkpoint_id, container_name, path, login_user]
    required: true
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: Refuse a bad checkpoint id before anything changes
  ansible.builtin.assert:
    that: migrate_checkpoint_id is ferry.migrate.identifier('checkpoint_id')
"""

RETURN = r"""
_value:
  description: Whether the value is valid.
  type: bool
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.migrate.plugins.module_utils import _engine, _transport, _wire

RULES = {
    "checkpoint_id": _wire.valid_id,
    "container_name": lambda value: isinstance(value, str) and bool(_engine.CONTAINER_NAME.match(value)),
    "path": _transport.valid_command_path,
    "login_user": _transport.valid_user,
}


def identifier(value, kind):
    if kind not in RULES:
        raise AnsibleFilterError("ferry.migrate.identifier: kind must be one of %s, not %r" % (", ".join(sorted(RULES)), kind))
    return bool(RULES[kind](value))


class TestModule:
    def tests(self):
        return {"identifier": identifier}
