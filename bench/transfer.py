"""Benchmark: ferry.migrate.transfer against scp, node1 -> node2 on the local lab, same bundle, same run.

Writes the table to docs/benchmarks.md. A measurement, not a test: it asserts nothing.
Usage: python bench/transfer.py [MiB]   (the lab must be up: make demo, or ansible-playbook ferry.migrate.lab)
"""
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from lab import ADDRESS, LAB, OPS_USER, PORT, ROOT, playbook, ssh, ssh_argv  # noqa: E402  pylint: disable=wrong-import-position

SIZE_MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 512
# The cipher Ferry's OpenSSH sessions negotiate (the first of plugins/module_utils/_transport.py CIPHERS):
# every OpenSSH baseline uses it, so a ratio to it measures Ferry, not a cipher.
SSH_CIPHER = "aes128-gcm@openssh.com"
RUNS = 3
MAKE_BUNDLE = """
import os, sys
sys.path.insert(0, %r)
from ansible_collections.ferry.migrate.plugins.module_utils import _bundle
partial = _bundle.start('/var/lib/ferry', 'bench')
with open(os.path.join(partial, 'pages-1.img'), 'wb') as out:
    for block in range(%d):
        out.write(os.urandom(1 << 20))
_bundle.finalise('/var/lib/ferry', 'bench', {'engine': 'criu', 'container': {'name': 'bench', 'id': 'bench'}})
""" % ("/tmp/ferry-bench", SIZE_MIB)


def ferry_run(compress="none", route="direct"):
    ssh("node2", "rm -rf /var/lib/ferry/bench")
    proc = playbook(os.path.join(ROOT, "bench", "transfer.yml"), extra={"compress": compress, "route": route}, check=True)
    seconds, size, data_path = re.search(r"FERRY-BENCH (\S+) (\d+) (\S+)", proc.stdout).groups()
    return int(size) / 1048576 / float(seconds), data_path


def timed(node, command):
    """Seconds ``command`` took on ``node``, timed there (the harness's own SSH round trip left out)."""
    return float(ssh(node, "s=$(date +%%s.%%N); %s; e=$(date +%%s.%%N); echo \"$e - $s\" | bc" % command))


def scp_run():
    """scp node1 -> node2 as Ferry's transfer goes: the inventory's login and port, Ferry's cipher."""
    ssh("node2", "rm -f /tmp/bench.img")
    return SIZE_MIB / timed("node1", "scp -q -i /tmp/bench-key -o UserKnownHostsFile=/tmp/bench-known-hosts -o StrictHostKeyChecking=yes "
                                     "-P %d -c %s /var/lib/ferry/bench/pages-1.img %s@%s:/tmp/bench.img"
                                     % (PORT["node2"], SSH_CIPHER, OPS_USER, ADDRESS["node2"]))


def ship_module_utils():
    """The bundle is made on node1 with Ferry's own code: lab hosts cannot see this checkout (their /tmp is private)."""
    tar = subprocess.run(["tar", "-C", ROOT, "-c", "plugins/module_utils"], capture_output=True, check=True).stdout
    subprocess.run(ssh_argv("node1") + ["mkdir -p /tmp/ferry-bench/ansible_collections/ferry/migrate && "
                                        "tar -C /tmp/ferry-bench/ansible_collections/ferry/migrate -x"], input=tar, check=True)


def main():
    ship_module_utils()
    ssh("node1", "python3 -c %s" % subprocess.list2cmdline([MAKE_BUNDLE]))
    # scp needs a standing key on node1: the lab's own, copied into node1's private /tmp for this run.
    for name, dest in (("id_ed25519", "/tmp/bench-key"), ("known_hosts", "/tmp/bench-known-hosts")):
        with open(os.path.join(LAB, name)) as handle:
            ssh("node1", "umask 077; cat > %s <<'EOF'\n%sEOF" % (dest, handle.read()))
    try:
        results = {"scp": [scp_run() for run in range(RUNS)]}
        for label, compress, route in (("", "none", "direct"), (", zstd (random data)", "zstd", "direct"),
                                       (", relayed by the controller", "none", "controller")):
            runs = [ferry_run(compress, route) for run in range(RUNS)]
            results["ferry.migrate.transfer%s, data path %s" % (label, runs[0][1])] = [r[0] for r in runs]
    finally:
        ssh("node1", "rm -rf /tmp/bench-key /tmp/bench-known-hosts /tmp/ferry-bench /var/lib/ferry/bench")
        ssh("node2", "rm -rf /tmp/bench.img /var/lib/ferry/bench")
    baseline = statistics.median(results["scp"])
    lines = ["| method | median MiB/s | runs (MiB/s) | ratio to scp |", "|---|---|---|---|"]
    for name, values in results.items():
        runs = ", ".join("%.0f" % v for v in values)
        lines.append("| %s | %.0f | %s | %.2f |" % (name, statistics.median(values), runs, statistics.median(values) / baseline))
    table = "\n".join(lines)
    print(table)
    write_section("Checkpoint transfer, host to host", (
        "`python bench/transfer.py %d` on %s: a %d MiB bundle of random bytes (incompressible, like most process\n"
        "memory) sent node1 -> node2 over the lab fabric (veth pairs on a bridge, one machine, 2 cores), %d runs\n"
        "each, scp (%s, the cipher Ferry's sessions negotiate, logging in as the inventory does, timed on node1)\n"
        "measured in the same run as the baseline. Ferry's time includes connecting, the host-key\n"
        "check and the target verifying every byte's SHA-256 before the bundle appears. Data path `ssh` is the\n"
        "OpenSSH session from the source (the one-time key's forced command receives); `controller` is the relay for hosts that cannot reach\n"
        "each other (two OpenSSH sessions pumped by the controller).\n\n%s\n"
    ) % (SIZE_MIB, time.strftime("%Y-%m-%d"), SIZE_MIB, RUNS, SSH_CIPHER, table))


def write_section(title, body, path=os.path.join(ROOT, "docs", "benchmarks.md"),
                  heading="# Benchmarks\n\nMeasured figures; each section says how to reproduce it.\n"):
    """Replace (or append) section ``title`` of a Markdown page of measured figures."""
    text = open(path).read() if os.path.exists(path) else heading
    section = "## %s\n\n%s" % (title, body)
    pattern = re.compile(r"## %s\n.*?(?=\n## |\Z)" % re.escape(title), re.S)
    text = pattern.sub(lambda match: section.rstrip("\n") + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as handle:
        handle.write(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
