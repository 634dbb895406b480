#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: checkpoint_info
short_description: Inspect checkpoint bundles, verify their checksums and read their CRIU images
version_added: 0.1.0
description:
  - Lists the bundles in O(images_dir), or one bundle with O(checkpoint_id).
  - For each, returns the manifest, whether every file matches its size and SHA-256, and what the CRIU
    images say, read with pycriu; the process tree (pid, parent, session) and the size of the dumped memory.
author: Ferry developers (@ferry-migrate)
options:
  checkpoint_id:
    description: Only this bundle.
    type: str
  verify:
    description: Compute every file's SHA-256 (reads the whole bundle).
    type: bool
    default: true
extends_documentation_fragment:
  - ferry.migrate.common.images
attributes:
  check_mode:
    support: full
    description: The module changes nothing.
"""

EXAMPLES = r"""
- name: Is the checkpoint intact?
  ferry.migrate.checkpoint_info:
    checkpoint_id: redis-1
  register: info

- name: Fail unless it verifies
  ansible.builtin.assert:
    that: info.checkpoints[0].verified
    fail_msg: "{{ info.checkpoints[0].problems }}"
"""

RETURN = r"""
checkpoints:
  description: One entry per bundle.
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: Bundle name.
      type: str
    path:
      description: Bundle directory.
      type: str
    manifest:
      description: The manifest, or null when it is unreadable.
      type: dict
    verified:
      description: Every file matches the manifest.
      type: bool
    problems:
      description: What does not match.
      type: list
      elements: str
    processes:
      description: The dumped process tree (V(pid), V(ppid), V(sid)), as pids inside the checkpoint.
      type: list
      elements: dict
    memory_bytes:
      description: Bytes of dumped memory pages.
      type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle


def main():
    module = AnsibleModule(
        argument_spec=dict(
            checkpoint_id=dict(type="str"),
            images_dir=dict(type="path", default="/var/lib/ferry"),
            verify=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    try:
        checkpoints = _bundle.inventory(module.params["images_dir"], module.params["checkpoint_id"], module.params["verify"])
    except _bundle.BundleError as exc:
        module.fail_json(msg="checkpoint_id: %s" % exc)
    module.exit_json(changed=False, checkpoints=checkpoints)


if __name__ == "__main__":
    main()
