# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action for ferry.migrate.transfer: fills connection details from the inventory (as
ansible.posix.synchronize does); route=direct then runs the module on the source; route=controller
relays on the controller, the one place that sees both hosts."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.ferry.migrate.plugins.module_utils import _transport
from ansible_collections.ferry.migrate.plugins.plugin_utils import _inventory


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        try:
            self._task.args = self._from_inventory(dict(self._task.args), (task_vars or {}).get("hostvars", {}))
        except _inventory.InventoryError as exc:
            result.update(failed=True, phase="transfer", msg="transfer: %s" % exc)
            return result
        validation, dummy = self.validate_argument_spec(argument_spec=_transport.ARGUMENT_SPEC, **_transport.CONSTRAINTS)
        params = validation.validated_parameters
        if params["route"] == "direct":
            result.update(self._execute_module(module_name="ferry.migrate.transfer", module_args=self._task.args, task_vars=task_vars))
            return result
        problem = _transport.check_params(params)
        if problem:
            result.update(failed=True, msg=problem)
            return result
        try:
            result.update(self._relay(params))
        except (_transport.TransportError, OSError) as exc:
            result.update(failed=True, phase="transfer", msg="transfer (relayed by the controller): %s" % exc)
        return result

    @staticmethod
    def _from_inventory(args, hostvars):
        """An inventory name as target or source_address stands for how Ansible reaches that host.

        Options given in the task win; SSH options are the controller's view, so only a relay takes them.
        """
        for address, prefix in (("target", ""), ("source_address", "source_")):
            name = args.get(address)
            if isinstance(name, str) and name in hostvars:
                found = _inventory.host_connection(name, hostvars)
                args[address] = found["host"]
                args.setdefault(prefix + "port", found["port"])
                args.setdefault(prefix + "user", found["user"])
                if args.get("route") == "controller":
                    args.setdefault(prefix + "ssh_args", found["ssh_args"])
        return args

    def _relay(self, params):
        timeout = params["timeout"]
        sender = _transport.Channel(params["source_address"], params["source_port"], params["source_user"], "ferry-send", timeout,
                                    private_key=params["private_key"], host_keys=params["source_host_keys"],
                                    ssh_args=params["source_ssh_args"])
        try:
            receiver = _transport.Channel(params["target"], params["port"], params["user"], "ferry-receive", timeout,
                                          private_key=params["private_key"], host_keys=params["host_keys"],
                                          ssh_args=params["ssh_args"])
        except (_transport.TransportError, OSError):
            sender.kill()
            raise
        try:
            check_mode = bool(self._task.check_mode)
            sent = _transport.relay(sender, receiver, params["compress"], check_mode, timeout)
            return _transport.summary(sent, sent["bytes"], check_mode)
        finally:
            sender.close()
            receiver.close()
