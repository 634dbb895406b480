"""Moving a container's addresses: argv and rule parsing, against a recorded firewall (no host touched)."""
import json

import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _address, _bundle

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


class Nft:
    """A recorded nft: every argv with the script it read, and which tables exist."""

    def __init__(self):
        self.calls, self.tables = [], set()

    def __call__(self, argv, data=None, binary_data=False):
        self.calls.append((argv, data))
        if argv[1:] == ["-f", "-"]:
            self.tables.add(data.splitlines()[0].split()[-1])
            return 0, "", ""
        if argv[1:4] == ["delete", "table", "netdev"] and argv[4] in self.tables:
            self.tables.discard(argv[4])
            return 0, "", ""
        return 1, "", "Error: Could not process rule: No such file or directory"


def test_an_ingress_hold_drops_tcp_to_the_addresses_on_each_parent_device_in_one_table():
    nft = Nft()
    hold = _address.IngressHold(nft, "/usr/sbin/nft", "mig-1.a_b", ["eth0", "bond0.7"], ["10.199.0.150", "10.199.0.151"])
    hold.hold()
    argv, script = nft.calls[0]
    assert argv == ["/usr/sbin/nft", "-f", "-"]
    assert script == (  # replaced whole in one transaction: a hold left by a killed restore goes with it
        "add table netdev ferry_hold_mig-1.a_b\ndelete table netdev ferry_hold_mig-1.a_b\ntable netdev ferry_hold_mig-1.a_b {\n"
        '  chain in0 { type filter hook ingress device "eth0" priority -500; policy accept; '
        "ip daddr { 10.199.0.150, 10.199.0.151 } meta l4proto tcp drop; }\n"
        '  chain in1 { type filter hook ingress device "bond0.7" priority -500; policy accept; '
        "ip daddr { 10.199.0.150, 10.199.0.151 } meta l4proto tcp drop; }\n}\n")
    assert hold.release() is True and hold.release() is False
    assert nft.calls[-1][0] == ["/usr/sbin/nft", "delete", "table", "netdev", "ferry_hold_mig-1.a_b"]


@pytest.mark.parametrize("checkpoint_id, devices, addresses", [
    ("ab;12", ["eth0"], ["10.0.0.1"]), ("", ["eth0"], ["10.0.0.1"]), ("ab12", ['eth0" ; flush ruleset'], ["10.0.0.1"]),
    ("ab12", ["eth0"], ["10.0.0.1 } accept"])])
def test_an_ingress_hold_refuses_what_cannot_stand_in_an_nftables_script(checkpoint_id, devices, addresses):
    nft = Nft()
    with pytest.raises((_address.AddressError, _bundle.BundleError)):
        _address.IngressHold(nft, "/usr/sbin/nft", checkpoint_id, devices, addresses).hold()
    assert nft.calls == []


def test_a_failed_hold_says_where_and_why():
    def refusing(argv, data=None, binary_data=False):
        return 1, "", "Error: Could not process rule: No such device"
    with pytest.raises(_address.AddressError, match="^holding 10.0.0.1 on eth9 failed: Error: Could not process rule: No such device$"):
        _address.IngressHold(refusing, "/usr/sbin/nft", "ab12", ["eth9"], ["10.0.0.1"]).hold()
