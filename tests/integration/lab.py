"""Helpers for integration tests: run playbooks by FQCN against the local lab, reach lab hosts over SSH."""
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
LAB = "/var/lib/ferry-lab"
INVENTORY = LAB + "/inventory.yml"
ADDRESS = {"node%d" % i: "10.199.0.%d" % (10 + i) for i in range(1, 9)}
FILES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")


def _env(**extra):
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PATH=BIN + ":" + os.environ["PATH"])
    env.update(extra)
    return env


def playbook(name, *args, extra=None, check=None):
    argv = [os.path.join(BIN, "ansible-playbook"), name] + list(args)
    if os.path.exists(INVENTORY) and "-i" not in args:
        argv += ["-i", INVENTORY]
    if extra:
        argv += ["-e", json.dumps(extra)]
    proc = subprocess.run(argv, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900, check=False)
    if check is not None and (proc.returncode == 0) != check:
        raise AssertionError("%s exited %d\n%s\n%s" % (name, proc.returncode, proc.stdout[-6000:], proc.stderr[-3000:]))
    return proc


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


def ssh(host, command, check=True):
    proc = subprocess.run(
        ["ssh", "-i", LAB + "/id_ed25519", "-o", "UserKnownHostsFile=" + LAB + "/known_hosts",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "root@" + ADDRESS[host], command],
        capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("%s: %s exited %d: %s" % (host, command, proc.returncode, proc.stderr))
    return proc.stdout.strip()


def read_counter(node, port):
    """The count held in memory by the criu engine's lab workload (roles/lab/files/ferry_counter.py)."""
    return int(ssh(node, "python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', %d)).recv(64).decode())\"" % port))


def migrate(container, source, target, check=True, **extra):
    return playbook("ferry.migrate.migrate", extra=dict(migrate_container=container, migrate_source=source,
                                                        migrate_target=target, **extra), check=check)


# What every test starts from on a lab host: no containers, trees, checkpoints or one-time keys.
RESET = ("podman rm --force --time 0 --all >/dev/null; for f in /run/ferry/trees/*.pid; do "
         "[ -e \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; rm -f \"$f\"; done; "
         "rm -rf /var/lib/ferry/* /var/lib/ferry/.[!.]*; sed -i '/ferry-transfer:/d' /root/.ssh/authorized_keys 2>/dev/null; true")
COUNTER = ("podman run -d --name %s --network none localhost/ferry/busybox:lab "
           "sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done'")


def count(node, name="counter"):
    for _attempt in range(10):  # the counter rewrites its file: a read may land between truncate and write
        value = ssh(node, "podman exec %s cat /tmp/count" % name)
        if value:
            return int(value)
        time.sleep(0.05)
    raise AssertionError("%s on %s writes no count" % (name, node))


def containers(node):
    running = ssh(node, "podman ps --format '{{.Names}}'").split()
    return ["%s %s" % (name, "running" if name in running else "stopped")
            for name in ssh(node, "podman ps -a --format '{{.Names}}'").split()]


def images_dir(node):
    return ssh(node, "ls -A /var/lib/ferry")


def start_counter(node, name="counter"):
    ssh(node, COUNTER % name)
    time.sleep(1)
    return count(node, name)


def start_redis(node, name="redis", keys=3000):
    """A Redis container holding ``keys`` keys; returns the MGET of all of them (to compare later)."""
    ssh(node, "podman run -d --name %s --network none localhost/ferry/redis:lab" % name)
    script = "".join("SET k:%d v-%d-%d\\r\\n" % (i, i, i * 31) for i in range(keys))
    for _attempt in range(20):
        if "errors: 0" in ssh(node, "printf '%s' | podman exec -i %s redis-cli --pipe" % (script, name), check=False):
            break
        time.sleep(0.5)
    return ssh(node, redis_mget(name, keys))


def redis_mget(name, keys=3000):
    return "podman exec %s redis-cli MGET " % name + " ".join("k:%d" % i for i in range(keys))


def where(nodes):
    """Container name -> list of "node state" for every container on the given nodes."""
    found = {}
    for node in nodes:
        for entry in containers(node):
            name, state = entry.split()
            found.setdefault(name, []).append("%s %s" % (node, state))
    return found
