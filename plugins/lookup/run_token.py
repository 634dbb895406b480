# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: run_token
short_description: A fresh identity for one run of a fleet job, for its lock
version_added: 0.1.0
description:
  - Returns C(<controller>:<pid>:<random>) - the controller's host name, the PID of the
    C(ansible-playbook) process evaluating it, and 64 random bits.
  - M(ferry.migrate.journal) holds a job's lock for this token. Jobs that make up one run (the
    planning, migration and report jobs of an AWX workflow) pass it on in their artifacts, so they
    own the lock together, whichever container or controller they run on.
  - The controller and PID let a run on the same machine take over at once from a killed run; on any
    other machine the lock's lease decides.
author: Ferry developers (@ferry-migrate)
"""

EXAMPLES = r"""
- name: This run's token, unless the workflow brought one
  ansible.builtin.set_fact:
    fleet_run_token: "{{ lookup('ferry.migrate.run_token') }}"
  when: fleet_run_token is undefined
"""

RETURN = r"""
_raw:
  description: One token.
  type: list
  elements: str
"""

import multiprocessing
import os
import re
import secrets

from ansible.plugins.lookup import LookupBase


def make_token():
    # Tasks are templated in forked workers: the run itself is their parent.
    pid = os.getppid() if multiprocessing.parent_process() is not None else os.getpid()
    controller = re.sub(r"[^A-Za-z0-9_.-]", "-", os.uname().nodename) or "controller"
    return "%s:%d:%s" % (controller, pid, secrets.token_hex(8))


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        return [make_token()]
