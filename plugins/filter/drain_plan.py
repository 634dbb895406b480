# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: drain_plan
short_description: Plan where every container of the hosts to drain goes
version_added: 0.1.0
description:
  - Largest containers first, each goes to the eligible host with the most free memory. Eligible means
    not drained, not cordoned, in the source's CPU compatibility group, with free memory of at least the
    container's RSS times O(headroom), and holding no container with the same value of the
    O(anti_affinity_label) label.
  - A container that cannot be placed is listed in C(unplaced) with the reason; none is dropped.
    Containers with the O(pinned_label) label are not moved by a drain either, and are listed there.
  - Moves are grouped into waves with at most O(max_per_source) migrations out of and
    O(max_per_target) into any host per wave.
  - Deterministic, the same input gives the same plan.
options:
  _input:
    description: The fleet model, from P(ferry.migrate.fleet_model#filter).
    type: dict
    required: true
  drain:
    description: Host name or names to empty.
    type: list
    elements: str
    required: true
extends_documentation_fragment:
  - ferry.migrate.common.placement
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: Plan the drain of node1, two migrations at a time per host
  ansible.builtin.set_fact:
    plan: "{{ fleet | ferry.migrate.drain_plan(['node1'], max_per_source=2) }}"

- name: Containers that would stay behind
  ansible.builtin.debug:
    msg: "{{ plan.unplaced | map(attribute='reason') }}"
"""

RETURN = r"""
_value:
  description: The plan.
  type: dict
  contains:
    moves:
      description: C(id) (the checkpoint ID and journal key), C(container), C(engine), C(source), C(target), C(rss_bytes), C(wave) (from 1), in plan order.
      type: list
      elements: dict
    unplaced:
      description: C(container), C(host), C(reason).
      type: list
      elements: dict
    waves: {description: Number of waves., type: int}
    utilisation: {description: Host to memory utilisation C(before) and C(after)., type: dict}
    imbalance: {description: Standard deviation of the remaining hosts' utilisation C(after)., type: dict}
  sample:
    kind: drain
    drain: [node1]
    moves: [{id: redis-node1-to-node3, container: redis, engine: podman, source: node1, target: node3, rss_bytes: 9437184, wave: 1}]
    unplaced: [{container: big, host: node1, reason: "no host of CPU group 'a1' has 9000 MiB free (RSS x headroom)"}]
    waves: 1
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.migrate.plugins.plugin_utils import _planner


def drain_plan(fleet, drain, headroom=1.2, max_per_source=2, max_per_target=2,
               anti_affinity_label=_planner.ANTI_AFFINITY_LABEL, pinned_label=_planner.PINNED_LABEL):
    try:
        return _planner.drain_plan(fleet, drain, headroom, max_per_source, max_per_target, anti_affinity_label, pinned_label)
    except _planner.PlanError as exc:
        raise AnsibleFilterError("ferry.migrate.drain_plan: %s" % exc)


class FilterModule:
    def filters(self):
        return {"drain_plan": drain_plan}
