#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_report
short_description: Write the report of a drain or rebalance
version_added: 0.1.0
description:
  - Runs where the fleet job keeps its state (role variable C(fleet_state_host)) - the controller, or a
    host every job reaches. Writes into O(directory) a JSON record, a Markdown page, a PNG timeline of
    the migrations and a PNG chart of each host's utilisation before and after, all named
    C(<job>-<UTC time>.*), and returns the whole report as data.
  - The charts need matplotlib where the module runs; without it the report says they were skipped.
author: Ferry developers (@ferry-migrate)
options:
  directory:
    description: Where the report files go (created private, 0700).
    type: path
    required: true
  job:
    description: Job name, the files' prefix.
    type: str
    required: true
  kind:
    description: What ran.
    type: str
    choices: [drain, rebalance]
    required: true
  migrations:
    description: Migration records of this run (the C(ferry_migration) fact of role C(ferry.migrate.migrate)).
    type: list
    elements: dict
    default: []
  plan:
    description: The plan that ran (from P(ferry.migrate.drain_plan#filter) or P(ferry.migrate.rebalance_plan#filter)).
    type: dict
    required: true
  before:
    description: The fleet's imbalance and utilisation before the job (from P(ferry.migrate.fleet_imbalance#filter)).
    type: dict
    required: true
  after:
    description: The same, measured after the job.
    type: dict
    required: true
requirements:
  - matplotlib, for the charts (where the module runs)
attributes:
  check_mode:
    support: none
    description: Writes nothing in check mode; nothing ran to report.
"""

EXAMPLES = r"""
- name: Report
  ferry.migrate.fleet_report:
    directory: ~/.local/state/ferry/reports
    job: drain-node1
    kind: drain
    migrations: "{{ records }}"
    plan: "{{ ferry_plan }}"
    before: "{{ fleet_before | ferry.migrate.fleet_imbalance }}"
    after: "{{ fleet_after | ferry.migrate.fleet_imbalance }}"
  delegate_to: localhost
"""

RETURN = r"""
report:
  description:
    - The report, as written to the JSON file - the summary (counts by outcome, downtime median and
      max, bytes, imbalance, unplaced containers) with C(migrations) (their records), C(plan) and
      C(utilisation) (per host, before and after).
  returned: success
  type: dict
files:
  description: Paths written (C(json), C(markdown), C(timeline), C(utilisation)).
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.migrate.plugins.module_utils import _report


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directory=dict(type="path", required=True),
            job=dict(type="str", required=True),
            kind=dict(type="str", choices=["drain", "rebalance"], required=True),
            migrations=dict(type="list", elements="dict", default=[]),
            plan=dict(type="dict", required=True),
            before=dict(type="dict", required=True),
            after=dict(type="dict", required=True),
        ),
    )
    _report.run(module)


if __name__ == "__main__":
    main()
