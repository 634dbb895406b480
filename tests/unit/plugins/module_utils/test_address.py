"""Moving a container's addresses: argv and rule parsing, against a recorded firewall (no host touched)."""
import json

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _address

RULES = """-P INPUT ACCEPT
-A INPUT -s 10.199.0.13/32 -d 10.199.0.120/32 -p tcp -m tcp --sport 43154 --dport 7400 -m mark ! --mark 0xc114 -j DROP
-A INPUT -s 10.199.0.13/32 -d 10.199.0.121/32 -p tcp -m tcp --sport 5 --dport 6 -m mark ! --mark 0xc114 -j DROP
-A INPUT -d 10.199.0.120/32 -j DROP
"""


class Host:
    def __init__(self):
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[:3] == ["iptables", "-w", "-S"]:
            return 0, RULES if argv[3] == "INPUT" else "-P OUTPUT ACCEPT\n", ""
        if argv[:3] == ["ip", "-j", "-4"]:
            return 0, json.dumps([{"ifname": "eth0", "addr_info": [{"local": "10.199.0.120", "prefixlen": 24}]}]), ""
        if argv[:3] == ["iptables", "-w", "-D"] and argv[3:5] == ["INPUT", "-d"]:
            return 1, "", "Bad rule"  # the hold is gone after one delete
        return 0, "", ""


def test_unlock_removes_only_criu_locks_of_the_moved_addresses():
    host = Host()
    assert _address.Addresses(host).unlock(["10.199.0.120/24"]) == 1
    deletes = [argv for argv in host.calls if argv[:3] == ["iptables", "-w", "-D"]]
    assert deletes == [["iptables", "-w", "-D", "INPUT", "-s", "10.199.0.13/32", "-d", "10.199.0.120/32", "-p", "tcp", "-m",
                        "tcp", "--sport", "43154", "--dport", "7400", "-m", "mark", "!", "--mark", "0xc114", "-j", "DROP"]]


def test_remove_uses_the_interface_holding_the_address():
    host = Host()
    assert _address.Addresses(host).remove("10.199.0.120/24")
    assert ["ip", "addr", "del", "10.199.0.120/24", "dev", "eth0"] in host.calls
    assert not _address.Addresses(host).remove("10.199.0.99/24")


def test_hold_and_release_are_one_drop_rule():
    host = Host()
    _address.Addresses(host).hold("10.199.0.120/24")
    _address.Addresses(host).release("10.199.0.120/24")
    assert host.calls[0] == ["iptables", "-w", "-I", "INPUT", "-d", "10.199.0.120/32", "-j", "DROP"]
    assert host.calls[1] == ["iptables", "-w", "-D", "INPUT", "-d", "10.199.0.120/32", "-j", "DROP"]


@pytest.mark.parametrize("bad", ["10.199.0.120", "fe80::1/64", "10.199.0.300/24", "10.0.0.1/24; reboot"])
def test_check_refuses_what_is_not_an_ipv4_address_with_a_prefix(bad):
    with pytest.raises(_address.AddressError):
        _address.check(bad)
    assert _address.check("10.199.0.120/24") == "10.199.0.120/24"
