# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: rebalance_plan
short_description: Plan the fewest moves that even out the fleet
version_added: 0.1.0
description:
  - The imbalance is the standard deviation of the hosts' utilisation, of memory (RSS over capacity) or
    of CPU (cores used over CPUs) as O(metric) says. Below O(threshold) nothing moves.
  - Greedy. From the most utilised host, the one move to one of the least utilised hosts of its CPU
    group that lowers the imbalance most (fewer bytes on a tie), again until the imbalance is at most
    O(threshold), no move helps, or O(max_moves) is reached. Each container moves at most once.
  - Same constraints as P(ferry.migrate.drain_plan#filter), memory with O(headroom), CPU groups,
    anti-affinity. Cordoned hosts and containers with the O(pinned_label) label never take part.
  - Deterministic, the same input gives the same plan.
options:
  _input:
    description: The fleet model, from P(ferry.migrate.fleet_model#filter).
    type: dict
    required: true
  threshold:
    description: Imbalance (a standard deviation of utilisation, 0 to 0.5) that is good enough.
    type: float
    default: 0.1
  metric:
    description: What to even out.
    type: str
    choices: [memory, cpu]
    default: memory
  max_moves:
    description: Stop after this many moves (no limit when unset).
    type: int
extends_documentation_fragment:
  - ferry.migrate.common.placement
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: Even out memory until the standard deviation of utilisation is 5 points or less
  ansible.builtin.set_fact:
    plan: "{{ fleet | ferry.migrate.rebalance_plan(threshold=0.05) }}"

- name: Report
  ansible.builtin.debug:
    msg: "{{ plan.moves | length }} moves take the imbalance from {{ plan.imbalance.before }} to {{ plan.imbalance.after }}"
"""

RETURN = r"""
_value:
  description: The plan, shaped as P(ferry.migrate.drain_plan#filter)'s.
  type: dict
  contains:
    moves:
      description: C(id) (the checkpoint ID and journal key), C(container), C(engine), C(source), C(target), C(rss_bytes), C(wave) (from 1), in plan order.
      type: list
      elements: dict
    unplaced: {description: Always empty (a rebalance leaves what it cannot move)., type: list, elements: dict}
    waves: {description: Number of waves., type: int}
    utilisation: {description: Host to utilisation C(before) and C(after)., type: dict}
    imbalance:
      description: C(metric), C(threshold), C(before), C(after) and whether the threshold was C(reached).
      type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.migrate.plugins.plugin_utils import _planner


def rebalance_plan(fleet, threshold=0.1, metric="memory", headroom=1.2, max_per_source=2, max_per_target=2, max_moves=None,
                   anti_affinity_label=_planner.ANTI_AFFINITY_LABEL, pinned_label=_planner.PINNED_LABEL):
    try:
        return _planner.rebalance_plan(fleet, threshold, metric, headroom, max_per_source, max_per_target, max_moves,
                                       anti_affinity_label, pinned_label)
    except _planner.PlanError as exc:
        raise AnsibleFilterError("ferry.migrate.rebalance_plan: %s" % exc)


class FilterModule:
    def filters(self):
        return {"rebalance_plan": rebalance_plan}
