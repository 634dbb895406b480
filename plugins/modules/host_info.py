#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_info
short_description: What a placement planner needs to know about a host
version_added: 0.1.0
description:
  - Memory, CPUs, load, a CPU compatibility group, free space for checkpoints and the cordon mark
    (see M(ferry.migrate.cordon)). Cheap, it runs no CRIU; M(ferry.migrate.criu_info) proves CRIU works.
  - Filter P(ferry.migrate.fleet_model#filter) turns the results of a fleet into the planners' input;
    inventory variables override what is measured here.
author: Ferry developers (@ferry-migrate)
options: {}
extends_documentation_fragment:
  - ferry.migrate.common.images
attributes:
  check_mode:
    support: full
    description: The module changes nothing.
seealso:
  - module: ferry.migrate.cordon
  - module: ferry.migrate.container_info
"""

EXAMPLES = r"""
- name: Facts for the planner
  ferry.migrate.host_info:
  register: host
"""

RETURN = r"""
host:
  description: The host's facts.
  returned: always
  type: dict
  contains:
    memory_total_bytes: {description: MemTotal., type: int}
    memory_available_bytes: {description: MemAvailable., type: int}
    cpus: {description: Online CPUs., type: int}
    load1: {description: One-minute load average., type: float}
    cpu_group:
      description: >-
        Digest of the CPU as CRIU sees it (the cpuinfo image its restore checks), null where CRIU cannot say;
        hosts with the same one can take each other's containers, whatever kernel each runs.
      type: str
    cordoned: {description: Whether the host is cordoned (receives no migrations)., type: bool}
    cordon: {description: The cordon mark (reason and since) or null., type: dict}
    images_dir_free_bytes: {description: Free bytes where the checkpoints go., type: int}
  sample: {memory_total_bytes: 25216425984, memory_available_bytes: 23113809920, cpus: 2, load1: 0.4,
           cpu_group: 8c1f0a2b3c4d5e6f, cordoned: false, cordon: null, images_dir_free_bytes: 84825645056}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _host


def main():
    module = AnsibleModule(argument_spec=dict(images_dir=dict(type="path", default="/var/lib/ferry")), supports_check_mode=True)
    module.exit_json(changed=False, host=_host.facts(module.params["images_dir"]))


if __name__ == "__main__":
    main()
