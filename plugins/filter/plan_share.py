# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: plan_share
short_description: One job's share of a drain or rebalance plan, for migration jobs run side by side
version_added: 0.1.0
description:
  - Keeps the moves of share O(share) (C(i/n)) of the plan. Each wave's moves are dealt out, largest
    first, to the share holding the fewest bytes of that wave, so each of the n jobs gets its part of
    every wave.
  - Waves keep their numbers. Role C(ferry.migrate.fleet) makes a job wait, before a wave, until the
    earlier waves of every share are over (the journal says so), so the plan's per-host limits and its
    order hold across jobs and controllers.
  - Deterministic; the n shares together hold every move exactly once.
options:
  _input:
    description: The plan, from P(ferry.migrate.drain_plan#filter) or P(ferry.migrate.rebalance_plan#filter).
    type: dict
    required: true
  share:
    description: C(i/n), 1 <= i <= n.
    type: str
    required: true
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: The second of three migration jobs takes its moves
  ansible.builtin.set_fact:
    my_plan: "{{ ferry_run.plan | ferry.migrate.plan_share('2/3') }}"
"""

RETURN = r"""
_value:
  description: The plan with only this share's C(moves), and C(share).
  type: dict
"""

import re

from ansible.errors import AnsibleFilterError

from ansible_collections.ferry.migrate.plugins.plugin_utils import _planner


def plan_share(plan, share):
    match = re.match(r"^([1-9][0-9]*)/([1-9][0-9]*)$", str(share))
    if not match:
        raise AnsibleFilterError("ferry.migrate.plan_share: share %r must be i/n" % (share,))
    try:
        return _planner.share(plan, int(match.group(1)), int(match.group(2)))
    except (_planner.PlanError, KeyError, TypeError) as exc:
        raise AnsibleFilterError("ferry.migrate.plan_share: %s" % exc)


class FilterModule:
    def filters(self):
        return {"plan_share": plan_share}
