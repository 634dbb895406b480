# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A container's own network addresses, which move with it so that its clients stay connected.

An address (``A/prefix``) is taken off the source once the container is frozen, and put on the target
behind a hold: until the restore has succeeded, packets to it are dropped rather than answered with
resets by a kernel that has no socket for them yet, so the peers simply retransmit. Then the hold goes
and a gratuitous ARP tells the segment where the address lives now. CRIU's own connection locks
(iptables rules marked 0xc114 that a dump leaves behind) are removed wherever the container has
stopped running or runs again.

A container with an address of its own on a macvlan or ipvlan network gets the same protection one
step earlier, from an ``IngressHold``: its engine puts the address up in a fresh namespace before CRIU
has restored a single socket, and nothing in that namespace exists yet to hold it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import re
import socket
import struct
import subprocess
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle

CRIU_MARK = "0xc114"  # SOCCR_MARK: CRIU's lock rules let its own repair traffic through
CLONE_NEWNET = 0x40000000
DEVICE = re.compile(r"^[A-Za-z0-9_.-]{1,15}\Z")  # a network device's name, as it may stand in an nftables script


class AddressError(Exception):
    pass


def check(address: str) -> str:
    """``A/prefix`` (IPv4), or a failure naming it."""
    try:
        iface = ipaddress.ip_interface(address)
    except ValueError:
        raise AddressError("%r is not an address with a prefix length (A.B.C.D/N)" % address) from None
    if iface.version != 4 or "/" not in address:
        raise AddressError("%r: only IPv4 addresses with a prefix length move with a container" % address)
    return str(iface)


def _ip(address: str) -> str:
    return address.split("/")[0]


class Addresses:
    """Moves addresses on this host; ``run`` is AnsibleModule.run_command."""

    def __init__(self, run: t.Callable[..., tuple[int, str, str]]):
        self.run = run

    def _must(self, argv: list[str], what: str) -> str:
        rc, out, err = self.run(argv)
        if rc != 0:
            raise AddressError("%s failed: %s" % (what, (err or out).strip()))
        return out

    def local(self) -> dict[str, str]:
        """Address -> the interface holding it."""
        out = self._must(["ip", "-j", "-4", "addr", "show"], "ip addr show")
        return {"%s/%s" % (info["local"], info["prefixlen"]): link["ifname"] for link in json.loads(out or "[]")
                for info in link.get("addr_info", [])}

    def device(self, address: str) -> str:
        """The interface that reaches ``address`` while it is not local here."""
        out = self._must(["ip", "-j", "route", "get", _ip(address)], "ip route get %s" % address)
        routes = json.loads(out or "[]")
        if not routes or not routes[0].get("dev"):
            raise AddressError("no interface here reaches %s" % address)
        return routes[0]["dev"]

    def hold(self, address: str) -> None:
        self._must(["iptables", "-w", "-I", "INPUT", "-d", _ip(address) + "/32", "-j", "DROP"], "holding %s" % address)

    def release(self, address: str) -> None:
        while self.run(["iptables", "-w", "-D", "INPUT", "-d", _ip(address) + "/32", "-j", "DROP"])[0] == 0:
            pass

    def add(self, address: str, announce: bool = True) -> None:
        if address not in self.local():
            self._must(["ip", "addr", "add", address, "dev", self.device(address)], "adding %s" % address)
        if announce:
            self.announce(address)

    def announce(self, address: str) -> None:
        device = self.local().get(address)
        if device:
            gratuitous_arp(device, _ip(address))

    def remove(self, address: str) -> bool:
        device = self.local().get(address)
        if device is None:
            return False
        self._must(["ip", "addr", "del", address, "dev", device], "removing %s" % address)
        return True

    def unlock(self, addresses: list[str]) -> int:
        """Remove CRIU's connection locks that concern ``addresses``; returns how many."""
        ips = {_ip(a) + "/32" for a in addresses}
        if not ips:  # a tree without addresses of its own: nothing to look for
            return 0
        removed = 0
        for chain in ("INPUT", "OUTPUT"):
            rc, out, _err = self.run(["iptables", "-w", "-S", chain])
            if rc != 0:
                continue
            for rule in out.splitlines():
                spec = rule.split()
                if CRIU_MARK not in spec or spec[:2] != ["-A", chain] or not ips & set(spec):
                    continue
                if self.run(["iptables", "-w", "-D"] + spec[1:])[0] == 0:
                    removed += 1
        return removed


class IngressHold:
    """TCP to a container's addresses, dropped where its frames enter this host: an nftables ``netdev``
    ingress chain on each device its networks hang from (macvlan's and ipvlan's parents), which sees a
    frame before the container's namespace does. Podman and Docker set a restored container's network up,
    its address included, before CRIU restores its sockets; a client's retransmission arriving in between
    was answered with a reset (about one move in five of a busy server in the lab). Held, it is dropped and
    sent again, and the restored socket answers. One table per checkpoint (``ferry_hold_<checkpoint id>``):
    it is put in place and removed in one transaction each, and the rollback finds it by the checkpoint
    alone. ``run`` is AnsibleModule.run_command; ``nft`` the binary."""

    def __init__(self, run: t.Callable[..., tuple[int, str, str]], nft: str, checkpoint_id: str,
                 devices: list[str], addresses: list[str]):
        for device in devices:
            if not DEVICE.match(device):
                raise AddressError("network device %r cannot be held (not a device name)" % (device,))
        # A checkpoint ID's characters are all an nftables name may hold after its first letter.
        self.run, self.nft, self.table = run, nft, "ferry_hold_" + _bundle.check_id(checkpoint_id)
        self.devices, self.addresses = devices, addresses

    def hold(self) -> None:
        """Drop TCP to the addresses arriving on the devices, replacing any hold of this checkpoint's."""
        ips = ", ".join(_ip(check(a if "/" in a else a + "/32")) for a in self.addresses)
        chains = "".join('  chain in%d { type filter hook ingress device "%s" priority -500; policy accept; '
                         "ip daddr { %s } meta l4proto tcp drop; }\n" % (number, device, ips)
                         for number, device in enumerate(self.devices))
        script = "add table netdev {0}\ndelete table netdev {0}\ntable netdev {0} {{\n{1}}}\n".format(self.table, chains)
        rc, out, err = self.run([self.nft, "-f", "-"], data=script, binary_data=True)
        if rc != 0:
            raise AddressError("holding %s on %s failed: %s" % (ips, ", ".join(self.devices), (err or out).strip()))

    @contextlib.contextmanager
    def holding(self) -> t.Iterator[None]:
        """Held around the engine's restore, released the moment it returns: the container's sockets are
        back, or the restore failed, and then the engine's failure is the one reported (the rollback's
        ``state=absent`` releases again)."""
        self.hold()
        try:
            yield
        except Exception:
            with contextlib.suppress(AddressError):
                self.release()
            raise
        self.release()

    def release(self) -> bool:
        """Remove the hold; True when there was one."""
        rc, out, err = self.run([self.nft, "delete", "table", "netdev", self.table])
        if rc == 0:
            return True
        if "No such file or directory" in err:
            return False
        raise AddressError("releasing hold %s failed: %s" % (self.table, (err or out).strip()))


def gratuitous_arp(device: str, ip: str) -> None:
    """Tell the segment that ``ip`` is at this interface's MAC now (peers and bridges learn at once)."""
    try:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
            sock.bind((device, 0))
            mac = sock.getsockname()[4]
            addr = socket.inet_aton(ip)
            frame = (b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
                     + mac + addr + b"\xff" * 6 + addr)
            for _attempt in range(2):
                sock.send(frame)
    except OSError:
        pass  # peers still learn it when their ARP entries expire


def announce_namespace(pid: int | None) -> list[str]:
    """Gratuitous ARP for every IPv4 address in the network namespace of process ``pid`` (a container's
    own, just restored); the addresses announced. Switches learn the MAC's new port from it, as after a
    VM's live migration: an IPv4-only container that sends nothing, a server waiting for its next client,
    would otherwise stay out of reach until the switches' tables expire. Nothing when ``pid`` shares
    this host's namespace (a tree's addresses are the host's, see Addresses) or is gone."""
    path = "/proc/%d/ns/net" % pid if pid else ""
    try:
        if not path or os.stat(path).st_ino == os.stat("/proc/self/ns/net").st_ino:
            return []
    except OSError:
        return []
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # only a child enters the namespace: this process never leaves its own
        announced, code = [], 1
        try:
            os.close(read)
            handle = os.open(path, os.O_RDONLY)
            if ctypes.CDLL(None, use_errno=True).setns(handle, CLONE_NEWNET) == 0:
                out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, check=True).stdout
                for link in json.loads(out or "[]"):
                    for info in link.get("addr_info", []) if link.get("ifname") != "lo" else []:
                        gratuitous_arp(link["ifname"], info["local"])
                        announced.append(info["local"])
                code = 0
            os.write(write, json.dumps(announced).encode())
        finally:
            os._exit(code)  # pylint: disable=protected-access
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(child, 0)
    return json.loads(data or b"[]")
