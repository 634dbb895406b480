"""Helpers for integration tests: run playbooks by FQCN against the local lab, reach lab hosts over SSH."""
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
# A second lab can run beside the default one (say, while the fault matrix holds the first):
# FERRY_LAB_DIR=/var/lib/ferry-lab-b FERRY_LAB_NET=10.198.0 FERRY_LAB_PREFIX=ferryb pytest ...
LAB = os.environ.get("FERRY_LAB_DIR", "/var/lib/ferry-lab")
NET = os.environ.get("FERRY_LAB_NET", "10.199.0")
# Every lab host also runs its own Docker daemon, for the docker engine's tests. The fleet is a realistic
# one: Ansible logs in as a user that is not root and becomes root with sudo and a password, node2's sshd
# listens on port 2222, node3 is reached through node1 as a jump host, and no ansible_connection is set.
# The benchmarks and the fault matrix work on whichever lab is up (make demo's is a simple one).
FLEET = os.environ.get("FERRY_LAB_FLEET") or (open(LAB + "/fleet").read().strip() if os.path.exists(LAB + "/fleet") else "realistic")
KIND = os.environ.get("FERRY_LAB_KIND", "namespaces")  # vm: QEMU guests (tests/vm), no Docker there
LAB_VARS = {"lab_dir": LAB, "lab_network": NET, "lab_prefix": os.environ.get("FERRY_LAB_PREFIX", "ferry"), "lab_docker": KIND != "vm",
            "lab_fleet": FLEET, "lab_kind": KIND}
OPS_USER = "ferryops" if FLEET == "realistic" else "root"
# The login user's authorized_keys, where one-time transfer keys are granted.
GRANTS = "/home/ferryops/.ssh/authorized_keys" if FLEET == "realistic" else "/root/.ssh/authorized_keys"
INVENTORY = LAB + "/inventory.yml"
FABRIC = LAB_VARS["lab_prefix"] + "-fabric"  # the namespace holding the lab's bridge and host ports
ADDRESS = {"node%d" % i: "%s.%d" % (NET, 10 + i) for i in range(1, 9)}
PORT = {"node%d" % i: 2222 if FLEET == "realistic" and i == 2 else 22 for i in range(1, 9)}
HARNESS = NET + ".2"  # the harness logs in as root from its own address, the one the realistic fleet lets root in from
FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")


def _env(**extra):
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PATH=BIN + ":" + os.environ["PATH"])
    env.update(extra)
    return env


def playbook(name, *args, extra=None, check=None):
    argv = [os.path.join(BIN, "ansible-playbook"), name] + list(args)
    if os.path.exists(INVENTORY) and "-i" not in args:
        argv += ["-i", INVENTORY]
    if name == "ferry.migrate.lab":
        extra = dict(LAB_VARS, **(extra or {}))
    if extra:
        argv += ["-e", json.dumps(extra)]
    # A VM lab's first run builds its root filesystem (debootstrap) and boots guests under emulation.
    proc = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=2400, check=False)
    if check is not None and (proc.returncode == 0) != check:
        raise AssertionError("%s exited %d\n%s\n%s" % (name, proc.returncode, proc.stdout[-6000:], proc.stderr[-3000:]))
    return proc


def lab_session(nodes):
    """For a session fixture: the lab up with these hosts, yielded; torn down at the end, and after a run
    that fails or is interrupted (FERRY_LAB_KEEP=1 keeps it, to run tests again)."""
    try:
        playbook("ferry.migrate.lab", extra={"lab_hosts": len(nodes)}, check=True)
        yield nodes
    finally:
        if os.environ.get("FERRY_LAB_KEEP") != "1":
            playbook("ferry.migrate.lab", extra={"lab_state": "absent"})


def module(host, name, **args):
    """Run one module ad hoc on a lab host; returns its result dict."""
    proc = subprocess.run(
        [os.path.join(BIN, "ansible"), host, "-i", INVENTORY, "-m", name] + (["-a", json.dumps(args)] if args else []),
        cwd=ROOT, env=_env(ANSIBLE_STDOUT_CALLBACK="oneline", ANSIBLE_CALLBACK_RESULT_FORMAT="json"),
        capture_output=True, text=True, timeout=300, check=False)
    match = re.search(r"^%s \| ([A-Z!]+) => (\{.*\})\s*\Z" % re.escape(host), proc.stdout, re.M | re.S)
    if not match:
        raise AssertionError("no result from %s on %s: %s %s" % (name, host, proc.stdout, proc.stderr))
    return dict(json.loads(match.group(2)), failed=match.group(1) == "FAILED!")


def recap(stdout):
    """PLAY RECAP as {host: {"ok": n, "changed": n, "failed": n, ...}}."""
    hosts = {}
    for host, counters in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", stdout, re.M):
        hosts[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counters)}
    return hosts


def ssh_argv(host, *options):
    """The harness's own SSH to a lab host: root, from the harness's address, host key verified."""
    return ["ssh", "-i", LAB + "/id_ed25519", "-o", "UserKnownHostsFile=" + LAB + "/known_hosts", "-b", HARNESS, "-p", str(PORT[host]),
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"] + list(options) + ["root@" + ADDRESS[host]]


def ssh(host, command, check=True):
    proc = subprocess.run(
        ssh_argv(host) + [command],
        capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s: %s exited %d: %s" % (host, command, proc.returncode, proc.stderr))
    return proc.stdout.strip()


def memory_tree(node, name, port, mib, dirty=0):
    """A criu-engine tree holding ``mib`` MiB and a count it keeps raising; with ``dirty``, rewriting
    those MiB at that many MiB/s (see roles/lab/files/ferry_memory.py)."""
    ssh(node, "ferry-lab spawn-tree %s python3 /usr/local/lib/ferry-lab/ferry_memory.py %d %d %s" % (name, port, mib, dirty))
    for _attempt in range(100):
        if ssh(node, "python3 -c \"import socket; socket.create_connection(('127.0.0.1', %d))\" 2>/dev/null && echo up" % port, check=False) == "up":
            return
        time.sleep(0.2)
    raise AssertionError("the memory workload did not start on %s" % node)


def memory_state(node, port, writes=False):
    """(count, sha256 of the workload's bytes) from a ferry_memory.py tree, and the writes it made with ``writes``."""
    text = ssh(node, "python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', %d)).recv(128).decode())\"" % (port + 1))
    found, digest, made = text.split()
    return (int(found), digest, int(made)) if writes else (int(found), digest)


def read_counter(node, port):
    """The count held in memory by the criu engine's lab workload (roles/lab/files/ferry_counter.py)."""
    return int(ssh(node, "python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', %d)).recv(64).decode())\"" % port))


def migrate(container, source, target, check=True, **extra):
    return playbook("ferry.migrate.migrate", extra=dict(migrate_container=container, migrate_source=source,
                                                        migrate_target=target, **extra), check=check)


# What every test starts from on a lab host: no containers, trees, checkpoints or one-time keys.
RESET = ("podman rm --force --time 0 --all >/dev/null; "
         "for c in $(lxc-ls 2>/dev/null); do lxc-stop --name $c --kill 2>/dev/null; lxc-destroy --name $c >/dev/null; done; "
         "[ -S /run/docker.sock ] && docker rm --force $(docker ps -a -q) >/dev/null 2>&1; for f in /run/ferry/trees/*.pid; do "
         "[ -e \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; rm -f \"$f\"; done; "
         "for f in /run/ferry/trees/*.addresses; do [ -e \"$f\" ] && ip addr del $(cat \"$f\") dev eth0 2>/dev/null; rm -f \"$f\"; done; "
         "for c in INPUT OUTPUT; do iptables -w -S $c | grep -e 0xc114 -e '/32 -j DROP' | sed 's/^-A/-D/' | xargs -r -L1 iptables -w; done; "
         "for t in $(nft list tables netdev 2>/dev/null | grep -o 'ferry_hold_[A-Za-z0-9_.-]*'); do nft delete table netdev $t; done; "
         "for f in /var/lib/ferry/.link-*.json; do [ -e \"$f\" ] && kill -9 $(sed 's/.*\"pid\": \\([0-9]*\\).*/\\1/' \"$f\") 2>/dev/null; done; "
         "rm -rf /var/lib/ferry/* /var/lib/ferry/.[!.]*; sed -i '/ferry-transfer:/d' %s 2>/dev/null; rm -f /etc/sudoers.d/zz-ferry-????????????????; true"
         % GRANTS)
COUNTER = ("{engine} run -d --name {name} --network none localhost/ferry/busybox:lab "
           "sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done'")


# A system container of LXC's busybox template, with an init running services: syslogd, a counter,
# a TCP echo server on port 7000, at an address of its own on the lab's shared segment, and a ticker
# that keeps one file /var/tick-N, making the next and deleting the last. IPv4 only, as many are: its
# link sends nothing of its own when it comes up (no IPv6 neighbour discovery), so after a move the
# lab's switch learns where its MAC went from Ferry's announcement, or from the container's next reply.
LXC = r"""set -e
lxc-create --name {name} --template busybox >/dev/null
d=/var/lib/lxc/{name}
sed -i -e '/^lxc.net/d' -e '/^lxc.apparmor/d' -e 's/^lxc.tty.max = .*/lxc.tty.max = {ttys}/' $d/config
cat >> $d/config <<EOF
lxc.console.path = none
lxc.net.0.type = macvlan
lxc.net.0.macvlan.mode = bridge
lxc.net.0.link = eth0
lxc.net.0.flags = up
lxc.net.0.ipv4.address = {address}/24
lxc.sysctl.net.ipv6.conf.all.disable_ipv6 = 1
lxc.sysctl.net.ipv6.conf.default.disable_ipv6 = 1
{extra}
EOF
printf '#!/bin/sh\n/bin/syslogd\n/bin/mount -a\n' > $d/rootfs/etc/init.d/rcS
cat > $d/rootfs/etc/inittab <<'EOF'
::sysinit:/etc/init.d/rcS
::respawn:/bin/sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done'
::respawn:/bin/nc -ll -p 7000 -e /bin/cat
::respawn:/bin/sh -c 'i=0; while :; do i=$((i+1)); : > /var/tick-$i; rm -f /var/tick-$((i-1)); sleep 0.05; done'
EOF
lxc-start --name {name}
"""
EXEC = {"podman": "podman exec {name}", "docker": "docker exec {name}", "lxc": "lxc-attach --name {name} --"}


def start_lxc(node, name, address, ttys=0, extra=""):
    """An LXC system container (see LXC) on ``node``, ``extra`` added to its configuration; returns its
    count once it counts."""
    ssh(node, LXC.format(name=name, address=address, ttys=ttys, extra=extra))
    # A new container has a new MAC: the tests' own ARP entry for an earlier one at this address would
    # take up to a minute to give up on the old MAC. (A migrated container keeps its MAC.)
    subprocess.run(["ip", "neigh", "flush", "to", address], check=True)
    time.sleep(1)
    return count(node, name, "lxc")


def count(node, name="counter", engine="podman"):
    for _attempt in range(10):  # the counter rewrites its file: a read may land between truncate and write
        value = ssh(node, EXEC[engine].format(name=name) + " cat /tmp/count")
        if value:
            return int(value)
        time.sleep(0.05)
    raise AssertionError("%s on %s writes no count" % (name, node))


def containers(node, engine="podman"):
    if engine == "lxc":
        return [" ".join(line.lower().split()) for line in ssh(node, "lxc-ls --fancy --fancy-format NAME,STATE | tail -n +2").splitlines()]
    running = ssh(node, "%s ps --format '{{.Names}}'" % engine).split()
    return ["%s %s" % (name, "running" if name in running else "stopped")
            for name in ssh(node, "%s ps -a --format '{{.Names}}'" % engine).split()]


def images_dir(node):
    return ssh(node, "ls -A /var/lib/ferry")


def start_counter(node, name="counter", engine="podman", network="none"):
    ssh(node, COUNTER.format(engine=engine, name=name).replace("--network none", "--network " + network))
    time.sleep(1)
    return count(node, name, engine)


def start_redis(node, name="redis", keys=3000, engine="podman", network="none"):
    """A Redis container holding ``keys`` keys; returns the MGET of all of them (to compare later)."""
    ssh(node, "%s run -d --name %s --network %s localhost/ferry/redis:lab" % (engine, name, network))
    script = "".join("SET k:%d v-%d-%d\\r\\n" % (i, i, i * 31) for i in range(keys))
    for _attempt in range(20):
        if "errors: 0" in ssh(node, "printf '%s' | %s exec -i %s redis-cli --pipe" % (script, engine, name), check=False):
            break
        time.sleep(0.5)
    return ssh(node, redis_mget(name, keys, engine))


def redis_mget(name, keys=3000, engine="podman"):
    return "%s exec %s redis-cli MGET " % (engine, name) + " ".join("k:%d" % i for i in range(keys))


def where(nodes, engines=("podman",)):
    """Container name -> list of "node state" for every container on the given nodes."""
    found = {}
    for node in nodes:
        for engine in engines:
            for entry in containers(node, engine):
                name, state = entry.split()
                found.setdefault(name, []).append("%s %s" % (node, state))
    return found
