# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action for ferry.migrate.transfer: route=direct runs the module on the source; route=controller
relays on the controller, the one place that sees both hosts."""

from __future__ import annotations

import socket

from ansible.plugins.action import ActionBase

from ansible_collections.ferry.migrate.plugins.module_utils import _transport


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        validation, dummy = self.validate_argument_spec(argument_spec=_transport.ARGUMENT_SPEC, **_transport.CONSTRAINTS)
        params = validation.validated_parameters
        if params["route"] == "direct":
            result.update(self._execute_module(module_name="ferry.migrate.transfer", module_args=self._task.args, task_vars=task_vars))
            return result
        problem = _transport.check_params(params)
        if problem or not _transport.HAS_PARAMIKO:
            result.update(failed=True, msg=problem or "route=controller needs paramiko on the controller: %s" % _transport.PARAMIKO_IMPORT_ERROR)
            return result
        try:
            result.update(self._relay(params))
        except (_transport.TransportError, _transport.paramiko.SSHException, socket.error, ValueError) as exc:
            result.update(failed=True, phase="transfer", msg="transfer (relayed by the controller): %s" % exc)
        return result

    def _relay(self, params):
        pkey = _transport.load_private_key(params["private_key"])
        ends = []
        try:
            for host, port, keys in ((params["source_address"], params["source_port"], params["source_host_keys"]),
                                     (params["target"], params["port"], params["host_keys"])):
                pins = _transport.pinned_keys(host, port, keys, None)
                ends.append(_transport.connect(host, port, params["user"], pkey, pins, params["timeout"]))
            check_mode = bool(self._task.check_mode)
            sent = _transport.relay(ends[0], ends[1], params["compress"], check_mode, params["timeout"])
            return _transport.summary(sent, sent["bytes"], ends[1].remote_cipher, check_mode)
        finally:
            for end in ends:
                end.close()
