# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a checkpoint bundle between hosts through OpenSSH: straight from the source, or relayed by
the controller.

OpenSSH does the cryptography, at C speed, and follows the inventory's connection details: address,
port, login user and SSH options (a jump host through ProxyJump or ProxyCommand). Ferry adds the
one-time key, whose forced command is ``_wire.py`` on the other end, and the host-key pin: the peer's
key must be one of the keys its own host reported (no trust on first use).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import typing as t

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _engine, _wire

CHUNK = 1 << 20
CONNECT_TIMEOUT = 15
# A stable name for the pinned keys, whatever address, port or jump host the connection goes through.
PIN_ALIAS = "ferry-peer"
# AES-GCM first: the fastest where the CPU has AES instructions (~0.7 GiB/s here against ~0.55 for chacha20).
CIPHERS = "^aes128-gcm@openssh.com,aes256-gcm@openssh.com"
_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\Z")
_KEY_TYPE = re.compile(r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa)\Z")
_COMMAND_PATH = re.compile(r"^/[A-Za-z0-9_./-]+\Z")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,3}\Z")


# How a host reaches the target's forced command: the suboptions of checkpoint's send and page_link.
PEER_SPEC = dict(
    target=dict(type="str", required=True),
    port=dict(type="int", default=22),
    user=dict(type="str", default="root"),
    private_key=dict(type="str", required=True, no_log=True),
    host_keys=dict(type="list", elements="str", required=True, no_log=False),
)

# The options of ferry.migrate.transfer, checked by the module on the source and by its action plugin
# on the controller (which fills connection details from the inventory and handles route=controller).
ARGUMENT_SPEC = dict(
    checkpoint_id=dict(type="str", required=True),
    target=dict(type="str", required=True),
    port=dict(type="int", default=22),
    user=dict(type="str", default="root"),
    ssh_args=dict(type="list", elements="str", default=[]),
    private_key=dict(type="str", no_log=True),
    private_key_file=dict(type="path"),
    host_keys=dict(type="list", elements="str", no_log=False),
    known_hosts_file=dict(type="path"),
    compress=dict(type="str", choices=["none", "zstd"], default="none"),
    route=dict(type="str", choices=["direct", "controller"], default="direct"),
    source_address=dict(type="str"),
    source_port=dict(type="int", default=22),
    source_user=dict(type="str", default="root"),
    source_ssh_args=dict(type="list", elements="str", default=[]),
    source_host_keys=dict(type="list", elements="str", no_log=False),
    images_dir=dict(type="path", default="/var/lib/ferry"),
    timeout=dict(type="int", default=300),
)
CONSTRAINTS = dict(
    required_one_of=[("private_key", "private_key_file"), ("host_keys", "known_hosts_file")],
    mutually_exclusive=[("private_key", "private_key_file")],
    required_if=[("route", "controller", ("private_key", "source_address", "source_host_keys", "host_keys"))],
)


class TransportError(Exception):
    pass


def check_params(params: dict[str, t.Any]) -> str | None:
    """What is wrong with the options beyond their types, naming the option; None when nothing."""
    for name in ("port", "source_port"):
        if not 0 < params[name] < 65536:
            return "%s must be 1 to 65535, not %d" % (name, params[name])
    for name in ("user", "source_user"):
        if not valid_user(params[name]):
            return "%s must be a login name (letters, digits, '_.-'), not %r" % (name, params[name])
    for name in ("target", "source_address"):
        if params[name] is not None and (not params[name] or params[name].startswith("-") or any(c.isspace() for c in params[name])):
            return "%s must be a host name or address, not %r" % (name, params[name])
    try:
        _bundle.check_id(params["checkpoint_id"])
    except _bundle.BundleError as exc:
        return str(exc)
    if params["timeout"] <= 0:
        return "timeout must be positive, not %d" % params["timeout"]
    return None


def summary(sent: dict[str, t.Any], size: int, check_mode: bool) -> dict[str, t.Any]:
    """The module's result from a send or relay."""
    moved = not sent["have"]
    throughput = round(size / 1048576.0 / sent["seconds"], 1) if moved and sent["seconds"] and not check_mode else None
    return dict(changed=moved, bytes=size, sent_bytes=sent["sent_bytes"], seconds=sent["seconds"],
                throughput_mib_s=throughput, data_path=sent["data_path"])


def pin_lines(host_keys: list[str] | None) -> list[str]:
    """known_hosts lines that pin ``host_keys`` (``type base64``) under PIN_ALIAS."""
    lines = []
    for key in host_keys or []:
        parts = key.split()
        if len(parts) >= 2 and valid_host_key(parts[0], parts[1]):
            lines.append("%s %s %s" % (PIN_ALIAS, parts[0], parts[1]))
    return lines


def ssh_argv(host: str, port: int, user: str, command: str, identity: str, known_hosts: str, ssh_args: list[str] | None = None,
             timeout: float = 300, pinned: bool = True) -> list[str]:
    """The OpenSSH client's argv for one session running ``command`` on ``user@host``.

    Ferry's options come first (OpenSSH keeps the first value it is given), the inventory's after them:
    its ProxyJump or ProxyCommand applies, its identities and multiplexing do not. ``pinned``: the
    known_hosts file holds pin_lines(), looked up under PIN_ALIAS, not the host's name.
    """
    keys = ["-o", "UserKnownHostsFile=" + known_hosts, "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "UpdateHostKeys=no"]
    if pinned:
        keys = ["-o", "HostKeyAlias=" + PIN_ALIAS, "-o", "CheckHostIP=no"] + keys
    return (["ssh", "-T", "-x", "-a", "-p", str(port), "-l", user, "-i", identity,
             "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes",
             "-o", "PreferredAuthentications=publickey", "-o", "ControlMaster=no", "-o", "ControlPath=none",
             "-o", "ClearAllForwardings=yes", "-o", "Compression=no", "-o", "Ciphers=" + CIPHERS,
             "-o", "ConnectTimeout=%d" % min(timeout, CONNECT_TIMEOUT), "-o", "ServerAliveInterval=15",
             "-o", "ServerAliveCountMax=%d" % max(2, int(timeout // 15)), "-o", "LogLevel=ERROR"]
            + keys + list(ssh_args or []) + ["--", host, command])


def valid_user(name: t.Any) -> bool:
    """A login name as useradd allows it (and nothing sshd or sudoers would read as syntax)."""
    return isinstance(name, str) and bool(_USER.match(name))


def valid_command_path(path: t.Any) -> bool:
    """An absolute path of [A-Za-z0-9_./-] without '..': nothing in it is read as sshd or sudoers syntax."""
    return isinstance(path, str) and bool(_COMMAND_PATH.match(path)) and ".." not in path.split("/")


def valid_host_key(key_type: str, data: str) -> bool:
    return bool(_KEY_TYPE.match(key_type)) and bool(_BASE64.match(data))


def _private_file(directory: str, name: str, text: str) -> str:
    """A file only its owner reads, in a private directory: a one-time key, or the pinned host keys."""
    path = os.path.join(directory, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="ascii") as handle:
        handle.write(text)
    return path


class Channel:
    """One SSH session to a peer whose one-time key runs a forced command: its stdin and stdout carry
    the wire protocol. The key and the pinned host keys live in a private directory while it runs."""

    def __init__(self, host: str, port: int, user: str, command: str, timeout: float = 300, private_key: str | None = None,
                 private_key_file: str | None = None, host_keys: list[str] | None = None,
                 known_hosts_file: str | None = None, ssh_args: list[str] | None = None) -> None:
        self.host = host
        self._ready = False
        self._last_error = ""
        self._dir = tempfile.mkdtemp(prefix="ferry-ssh-")  # 0700
        try:
            identity = private_key_file
            if private_key is not None:
                identity = _private_file(self._dir, "key", private_key if private_key.endswith("\n") else private_key + "\n")
            known = known_hosts_file
            if host_keys:
                known = _private_file(self._dir, "known_hosts", "".join(line + "\n" for line in pin_lines(host_keys)))
                if not pin_lines(host_keys):
                    raise TransportError("no valid host key pinned for %s" % host)
            if not known:
                raise TransportError("no pinned host key for %s: give host_keys or a known_hosts_file that lists it" % host)
            # Pinned keys are looked up under PIN_ALIAS; an operator's known_hosts file under the host's name.
            argv = ssh_argv(host, port, user, command, identity, known, ssh_args, timeout, pinned=bool(host_keys))
            self._stderr = open(os.path.join(self._dir, "stderr"), "w+b")  # pylint: disable=consider-using-with
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,  # pylint: disable=consider-using-with
                                          bufsize=0, start_new_session=True)
        except (OSError, TransportError):
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        for pipe in (self._proc.stdin, self._proc.stdout):
            _wire.widen_pipe(pipe.fileno())
        self._reader = os.fdopen(os.dup(self._proc.stdout.fileno()), "rb", buffering=CHUNK)

    def ready(self) -> None:
        """Wait for the peer's receiver to answer: the connection, host key and login are good."""
        if not self._ready:
            try:
                _wire.await_ready(self.readline)
            except (_wire.WireError, OSError) as exc:
                self.kill()
                raise TransportError("cannot reach %s: %s%s" % (self.host, exc, self.stderr())) from None
            self._ready = True

    def write(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)
        except BrokenPipeError:
            raise TransportError("the connection to %s closed%s" % (self.host, self.stderr())) from None

    def readline(self) -> bytes:
        return self._reader.readline(_wire.MAX_HEADER)

    def recv(self, size: int) -> bytes:
        return os.read(self._proc.stdout.fileno(), size)

    def shutdown_write(self) -> None:
        if not self._proc.stdin.closed:
            self._proc.stdin.close()

    def stderr(self) -> str:
        """The last line OpenSSH or the forced command wrote to stderr, as ' (line)', or ''."""
        if self._stderr.closed:
            return self._last_error
        try:
            self._stderr.seek(0)
            text = self._stderr.read(65536).decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return " (%s)" % text.splitlines()[-1] if text else ""

    def close(self, wait: float = 30) -> int | None:
        self.shutdown_write()
        try:
            code = self._proc.wait(wait)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        finally:
            self._last_error = self.stderr()
            self._reader.close()
            self._proc.stdout.close()
            self._stderr.close()
            shutil.rmtree(self._dir, ignore_errors=True)
        return code

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self.close()


def _line(sock: socket.socket) -> bytes:
    """One line of the wire's handshake, read a byte at a time: what follows it is not this reader's."""
    line = bytearray()
    while not line.endswith(b"\n") and len(line) < 4096:
        block = sock.recv(1)
        if not block:
            break
        line += block
    return bytes(line)


class LinkDialer:
    """Opens sessions of a checkpoint's page link (see _relay) to the target: each one an OpenSSH session
    with the one-time key, whose forced command joins the link there. The session's stdin and stdout are
    one end of a socket pair, so the relay reads and writes it as the socket it returns."""

    def __init__(self, checkpoint_id: str, host: str, port: int, user: str, private_key: str, host_keys: list[str],
                 ssh_args: list[str] | None = None) -> None:
        if not pin_lines(host_keys):
            raise TransportError("no valid host key pinned for %s" % host)
        self._dir = tempfile.mkdtemp(prefix="ferry-link-")  # 0700
        identity = _private_file(self._dir, "key", private_key if private_key.endswith("\n") else private_key + "\n")
        known = _private_file(self._dir, "known_hosts", "".join(line + "\n" for line in pin_lines(host_keys)))
        self._argv = ssh_argv(host, port, user, "link " + checkpoint_id, identity, known, ssh_args)
        self.host = host
        self._sessions: list[subprocess.Popen] = []

    def __call__(self, timeout: float) -> socket.socket:
        """A new session, its forced command started and joined to the link, within ``timeout`` seconds."""
        for proc in [p for p in self._sessions if p.poll() is not None]:
            self._sessions.remove(proc)
        mine, theirs = socket.socketpair()
        errors = tempfile.TemporaryFile(dir=self._dir)  # pylint: disable=consider-using-with
        try:
            proc = subprocess.Popen(self._argv, stdin=theirs, stdout=theirs, stderr=errors,  # pylint: disable=consider-using-with
                                    start_new_session=True)
        finally:
            theirs.close()
        self._sessions.append(proc)
        try:
            mine.settimeout(timeout)
            _wire.await_ready(lambda: _line(mine))
            mine.sendall(json.dumps({"link": True}).encode() + b"\n")
            answer = _line(mine)
            if not answer.startswith(b'{"link": true}'):
                raise _wire.WireError("the target did not join the link: %s" % answer[:300].decode("utf-8", "replace").strip())
            mine.settimeout(None)
            return mine
        except (OSError, _wire.WireError) as exc:
            mine.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            errors.seek(0)
            said = errors.read(4096).decode("utf-8", "replace").strip().splitlines()
            raise OSError("%s%s" % (exc, " (%s)" % said[-1] if said else "")) from None
        finally:
            errors.close()

    def close(self, grace: float = 5.0) -> None:
        """Let the sessions end (the relay has shut its side; ssh may still hold its last frames, the
        final acknowledgement among them), killing whichever is still there after ``grace`` seconds."""
        deadline = time.monotonic() + grace
        for proc in self._sessions:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._sessions = []
        shutil.rmtree(self._dir, ignore_errors=True)


def send_bundle(channel: Channel, bundle_dir: str, manifest: dict[str, t.Any], compress: str = "none",
                probe: bool = False, pipes: dict[str, int] | None = None,
                final: t.Callable[[], dict[str, t.Any]] | None = None, until_restored: bool = False) -> dict[str, t.Any]:
    """Stream a bundle to the target's receiver (a Channel running ``ferry-receive``, opened ahead of
    time so that its start-up is paid before the freeze); ``pipes``, ``final`` and ``until_restored`` as in
    _wire.send. Returns {"have", "sent_bytes", "data_path", "seconds"}: the seconds until the target had it."""
    started = time.monotonic()
    channel.ready()
    try:
        result = _wire.send(bundle_dir, manifest, channel.write, channel.readline, compress, probe, pipes, final, until_restored)
    except (_wire.WireError, OSError, ValueError) as exc:
        channel.kill()
        raise TransportError("%s%s" % (exc, channel.stderr())) from None
    result["seconds"] = round(time.monotonic() - started, 3)
    code = channel.close(_wire.RESTORE_WAIT + 30 if until_restored else 30)
    if code:
        raise TransportError("the connection to %s ended with status %d%s" % (channel.host, code, channel.stderr()))
    return result


def relay(sender: Channel, receiver: Channel, compress: str = "none", probe: bool = False, timeout: float = 300) -> dict[str, t.Any]:
    """Pump a bundle from the source's sender to the target's receiver through this process.

    For hosts that cannot reach each other. The bytes pass through memory here, never disk.
    Returns {"have", "bytes", "sent_bytes", "data_path", "seconds"}.
    """
    started = time.monotonic()
    sender.write(json.dumps({"compress": compress, "probe": probe}).encode() + b"\n")
    answers = bytearray()

    def backwards() -> None:  # the receiver's answers, which the sender waits for
        try:
            for block in iter(lambda: receiver.recv(65536), b""):
                answers.extend(block)
                sender.write(block)
        except (OSError, TransportError):
            pass
        sender.shutdown_write()

    thread = threading.Thread(target=backwards, daemon=True)
    thread.start()
    sent = 0
    header = bytearray()  # the sender's first line names the bundle's files and sizes
    try:
        for block in iter(lambda: sender.recv(CHUNK), b""):
            if sent < _wire.MAX_HEADER and b"\n" not in header:
                header.extend(block[:_wire.MAX_HEADER])
            receiver.write(block)
            sent += len(block)
        receiver.shutdown_write()
        thread.join(timeout)
    except (OSError, TransportError) as exc:
        raise TransportError("relay broke: %s%s%s" % (exc, sender.stderr(), receiver.stderr())) from None
    messages = [json.loads(line) for line in bytes(answers).splitlines() if line.strip()]
    messages = [m for m in messages if "ready" not in m]
    failed = [m for m in messages if m.get("ok") is False]
    if failed or not messages or (not messages[0].get("have") and not probe and not messages[-1].get("ok")):
        reason = failed[0].get("error") if failed else "no answer from the target"
        raise TransportError("the relayed transfer failed: %s%s%s" % (reason, sender.stderr(), receiver.stderr()))
    moved = not messages[0].get("have") and not probe
    manifest = json.loads(bytes(header).split(b"\n", 1)[0])["manifest"]
    return {"have": bool(messages[0].get("have")), "bytes": sum(entry["size"] for entry in manifest["files"]),
            "sent_bytes": sent if moved else 0, "data_path": "controller" if moved else None,
            "seconds": round(time.monotonic() - started, 3)}


def run(module: t.Any) -> None:
    """Module ferry.migrate.transfer: send a finished bundle to the target over OpenSSH."""
    params = module.params
    if params["route"] == "controller":
        module.fail_json(msg="route=controller is handled on the controller by the action plugin ferry.migrate.transfer; "
                             "call the module by that name")
    problem = check_params(params)
    if problem:
        module.fail_json(msg=problem)
    path, manifest = _engine.bundle_manifest(module, params["images_dir"], params["checkpoint_id"])
    try:
        channel = Channel(params["target"], params["port"], params["user"], "ferry-receive", params["timeout"],
                          private_key=params["private_key"], private_key_file=params["private_key_file"],
                          host_keys=params["host_keys"], known_hosts_file=params["known_hosts_file"],
                          ssh_args=params["ssh_args"])
        sent = send_bundle(channel, path, manifest, params["compress"], module.check_mode)
    except (TransportError, OSError) as exc:
        _engine.fail(module, "transfer", exc)
    module.exit_json(**summary(sent, _bundle.total_bytes(manifest), module.check_mode))
