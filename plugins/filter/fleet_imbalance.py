# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: fleet_imbalance
short_description: How uneven a fleet is
version_added: 0.1.0
description:
  - The standard deviation of the utilisation of the fleet's hosts that are not cordoned (0 is even),
    as P(ferry.migrate.rebalance_plan#filter) measures it, and each host's utilisation.
options:
  _input:
    description: The fleet model, from P(ferry.migrate.fleet_model#filter).
    type: dict
    required: true
  metric:
    description: Memory (RSS over capacity) or CPU (cores used over CPUs).
    type: str
    choices: [memory, cpu]
    default: memory
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: Imbalance now
  ansible.builtin.debug:
    msg: "{{ (fleet | ferry.migrate.fleet_imbalance).imbalance }}"
"""

RETURN = r"""
_value:
  description: C(metric), C(imbalance) and C(utilisation) (host to 0-1).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.migrate.plugins.plugin_utils import _planner


def fleet_imbalance(fleet, metric="memory"):
    try:
        return _planner.measure(fleet, metric)
    except _planner.PlanError as exc:
        raise AnsibleFilterError("ferry.migrate.fleet_imbalance: %s" % exc)


class FilterModule:
    def filters(self):
        return {"fleet_imbalance": fleet_imbalance}
