#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: cordon
short_description: Mark a host so that no migration lands on it
version_added: 0.1.0
description:
  - A cordoned host receives nothing from P(ferry.migrate.drain_plan#filter) and
    P(ferry.migrate.rebalance_plan#filter); its own containers stay where they are until it is drained.
  - The mark is a file in O(images_dir) that survives reboots; M(ferry.migrate.host_info) reports it.
author: Ferry developers (@ferry-migrate)
options:
  state:
    description: Whether the host is cordoned.
    type: str
    choices: [present, absent]
    default: present
  reason:
    description: Why, kept in the mark (changing it alone does not count as a change).
    type: str
    default: cordoned by ferry.migrate
extends_documentation_fragment:
  - ferry.migrate.common.images
attributes:
  check_mode:
    support: full
    description: Reports whether the mark would change.
  diff_mode:
    support: full
    description: Shows the mark before and after.
seealso:
  - module: ferry.migrate.host_info
"""

EXAMPLES = r"""
- name: Take node1 out of placement before patching it
  ferry.migrate.cordon:
    reason: kernel update CHG-1234
  delegate_to: node1
"""

RETURN = r"""
cordon:
  description: The mark after the task (reason and since), or null.
  returned: always
  type: dict
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _host


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            reason=dict(type="str", default="cordoned by ferry.migrate"),
            images_dir=dict(type="path", default="/var/lib/ferry"),
        ),
        supports_check_mode=True,
    )
    _host.run_cordon(module)


if __name__ == "__main__":
    main()
