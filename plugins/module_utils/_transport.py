# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moving a checkpoint bundle between hosts over SSH with paramiko: straight from the source, or
relayed by the controller.

Every host key must be one of the pinned keys: there is no trust on first use. The other end is
``_wire.py``, run by the host's sshd as the forced command of the one-time key used here.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import typing as t

try:
    import paramiko
    HAS_PARAMIKO = True
    PARAMIKO_IMPORT_ERROR = None
except Exception as exc:  # pylint: disable=broad-except
    paramiko = None
    HAS_PARAMIKO = False
    PARAMIKO_IMPORT_ERROR = exc

from ansible_collections.ferry.migrate.plugins.module_utils import _bundle, _wire

CHUNK = 1 << 20
CONNECT_TIMEOUT = 15
# Fastest first; paramiko older than 3.x has no GCM and falls back to CTR.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


# The options of ferry.migrate.transfer, checked by the module on the source and by its action plugin
# on the controller (which handles route=controller itself).
ARGUMENT_SPEC = dict(
    checkpoint_id=dict(type="str", required=True),
    target=dict(type="str", required=True),
    port=dict(type="int", default=22),
    user=dict(type="str", default="root"),
    private_key=dict(type="str", no_log=True),
    private_key_file=dict(type="path"),
    host_keys=dict(type="list", elements="str", no_log=False),
    known_hosts_file=dict(type="path"),
    compress=dict(type="str", choices=["none", "zstd"], default="none"),
    route=dict(type="str", choices=["direct", "controller"], default="direct"),
    source_address=dict(type="str"),
    source_port=dict(type="int", default=22),
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
    try:
        _bundle.check_id(params["checkpoint_id"])
    except _bundle.BundleError as exc:
        return str(exc)
    if params["timeout"] <= 0:
        return "timeout must be positive, not %d" % params["timeout"]
    return None


def summary(sent: dict[str, t.Any], size: int, cipher: str, check_mode: bool) -> dict[str, t.Any]:
    """The module's result from a send or relay."""
    moved = not sent["have"]
    throughput = round(size / 1048576.0 / sent["seconds"], 1) if moved and sent["seconds"] and not check_mode else None
    return dict(changed=moved, bytes=size, sent_bytes=sent["sent_bytes"], seconds=sent["seconds"],
                throughput_mib_s=throughput, cipher=cipher, data_path=sent["data_path"])


def load_private_key(text: str | None = None, path: str | None = None) -> t.Any:
    source = io.StringIO(text) if text is not None else None
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(source) if source else cls.from_private_key_file(path)
        except (paramiko.SSHException, ValueError):
            if source:
                source.seek(0)
    raise TransportError("the private key is not an OpenSSH ed25519, ecdsa or rsa key")


def pinned_keys(host: str, port: int, host_keys: list[str] | None, known_hosts_file: str | None) -> list[tuple[str, str]]:
    """(type, base64) pairs the target may present."""
    pins = []
    for line in host_keys or []:
        parts = line.split()
        if len(parts) >= 2:
            pins.append((parts[0], parts[1]))
    if known_hosts_file:
        known = paramiko.HostKeys(known_hosts_file)
        lookup = host if port == 22 else "[%s]:%d" % (host, port)
        for key in (known.lookup(lookup) or {}).values():
            pins.append((key.get_name(), key.get_base64()))
    if not pins:
        raise TransportError("no pinned host key for %s: give host_keys or a known_hosts_file that lists it" % host)
    return pins


def connect(host: str, port: int, user: str, pkey: t.Any, pins: list[tuple[str, str]], timeout: float) -> t.Any:
    # A host that does not answer within CONNECT_TIMEOUT is down; waiting the whole timeout keeps the
    # source frozen for nothing.
    sock = socket.create_connection((host, port), timeout=min(timeout, CONNECT_TIMEOUT))
    sock.settimeout(timeout)
    transport = paramiko.Transport(sock)
    options = transport.get_security_options()
    available = [c for c in PREFERRED_CIPHERS if c in options.ciphers]
    options.ciphers = tuple(available + [c for c in options.ciphers if c not in available])
    pinned_types = [pin[0] for pin in pins]
    options.key_types = tuple([kt for kt in pinned_types if kt in options.key_types] or options.key_types)
    transport.start_client(timeout=timeout)
    presented = transport.get_remote_server_key()
    if (presented.get_name(), presented.get_base64()) not in pins:
        transport.close()
        raise TransportError("host key of %s (%s) is not the pinned one: refusing to send" % (host, presented.get_name()))
    transport.auth_publickey(user, pkey)
    return transport


def open_receiver(transport: t.Any, timeout: float = 300) -> t.Any:
    """Start the target's receiver ahead of time: it waits for the bundle, its start-up already paid."""
    return _open(transport, "ferry-receive", timeout)


def send_bundle(transport: t.Any, bundle_dir: str, manifest: dict[str, t.Any], compress: str = "none",
                probe: bool = False, timeout: float = 300, channel: t.Any = None) -> dict[str, t.Any]:
    """Stream a bundle to the target's receiver (``channel`` from open_receiver, or a new one); returns
    {"have", "sent_bytes", "data_path", "seconds"}."""
    started = time.monotonic()
    channel = channel or _open(transport, "ferry-receive", timeout)
    try:
        result = _wire.send(bundle_dir, manifest, channel.sendall, channel.makefile("rb").readline, compress, probe,
                            data_host=transport.getpeername()[0], timeout=timeout)
    except (_wire.WireError, OSError) as exc:
        raise TransportError("%s%s" % (exc, _stderr(channel))) from None
    _close(channel)
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def relay(source: t.Any, target: t.Any, compress: str = "none", probe: bool = False, timeout: float = 300) -> dict[str, t.Any]:
    """Pump a bundle from the source's sender to the target's receiver through this process.

    For hosts that cannot reach each other. The bytes pass through memory here, never disk.
    Returns {"have", "bytes", "sent_bytes", "data_path", "seconds"}.
    """
    started = time.monotonic()
    sender = _open(source, "ferry-send", timeout)
    receiver = _open(target, "ferry-receive", timeout)
    sender.sendall(json.dumps({"compress": compress, "probe": probe}).encode() + b"\n")
    answers = bytearray()

    def backwards() -> None:  # the receiver's answers, which the sender waits for
        for block in iter(lambda: receiver.recv(65536), b""):
            answers.extend(block)
            sender.sendall(block)
        sender.shutdown_write()

    thread = threading.Thread(target=backwards, daemon=True)
    thread.start()
    sent = 0
    header = bytearray()  # the sender's first line names the bundle's files and sizes
    try:
        for block in iter(lambda: sender.recv(CHUNK), b""):
            if sent < _wire.MAX_HEADER and b"\n" not in header:
                header.extend(block[:_wire.MAX_HEADER])
            receiver.sendall(block)
            sent += len(block)
        receiver.shutdown_write()
        thread.join(timeout)
    except OSError as exc:
        raise TransportError("relay broke: %s%s%s" % (exc, _stderr(sender), _stderr(receiver))) from None
    messages = [json.loads(line) for line in bytes(answers).splitlines() if line.strip()]
    failed = [m for m in messages if m.get("ok") is False]
    if failed or not messages or (not messages[0].get("have") and not probe and not messages[-1].get("ok")):
        reason = failed[0].get("error") if failed else "no answer from the target"
        raise TransportError("the relayed transfer failed: %s%s" % (reason, _stderr(sender)))
    _close(sender)
    _close(receiver)
    moved = not messages[0].get("have") and not probe
    manifest = json.loads(bytes(header).split(b"\n", 1)[0])["manifest"]
    return {"have": bool(messages[0].get("have")), "bytes": sum(entry["size"] for entry in manifest["files"]),
            "sent_bytes": sent if moved else 0, "data_path": "controller" if moved else None,
            "seconds": round(time.monotonic() - started, 3)}


def _open(transport: t.Any, command: str, timeout: float) -> t.Any:
    channel = transport.open_session()
    channel.settimeout(timeout)
    channel.exec_command(command)  # the key's forced command decides what really runs
    return channel


def _stderr(channel: t.Any) -> str:
    try:
        text = channel.makefile_stderr("rb").read(65536).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return " (%s)" % text.splitlines()[-1] if text else ""


def _close(channel: t.Any) -> None:
    channel.shutdown_write()
    channel.recv_exit_status()
    channel.close()
