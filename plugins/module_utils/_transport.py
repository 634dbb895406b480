# -*- coding: utf-8 -*-
# Copyright (c) Ferry developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-to-host streaming of a checkpoint bundle over SSH with paramiko (sending end).

The target's host key must be one of the pinned keys: there is no trust on first use. The receiving
end is ``_receiver.py``, run by the target's sshd as the forced command of the key used here.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
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

CHUNK = 1 << 20
# Fastest first; paramiko older than 3.x has no GCM and falls back to CTR.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")


class TransportError(Exception):
    pass


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
    sock = socket.create_connection((host, port), timeout=timeout)
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


def _frames(path: str, compress: str) -> t.Iterator[bytes]:
    """A file as length-prefixed chunks, compressed with zstd on the way when asked, then an end mark."""
    if compress == "zstd":
        with subprocess.Popen(["zstd", "-q", "-1", "-T0", "-c", path], stdout=subprocess.PIPE) as proc:
            for block in iter(lambda: proc.stdout.read(CHUNK), b""):
                yield struct.pack(">I", len(block)) + block
            if proc.wait() != 0:
                raise TransportError("zstd failed on %s" % path)
    else:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                yield struct.pack(">I", len(block)) + block
    yield struct.pack(">I", 0)


def send_bundle(transport: t.Any, bundle_dir: str, manifest: dict[str, t.Any], compress: str = "none",
                probe: bool = False, timeout: float = 300) -> dict[str, t.Any]:
    """Stream a bundle to the receiver; returns {"have", "sent_bytes", "seconds"}."""
    channel = transport.open_session()
    channel.settimeout(timeout)
    channel.exec_command("ferry-receive")  # the key's forced command decides what really runs
    replies = channel.makefile("rb")

    def reply() -> dict[str, t.Any]:
        line = replies.readline()
        if not line:
            err = channel.makefile_stderr("rb").read().decode("utf-8", "replace").strip()
            raise TransportError("the target closed the transfer: %s" % (err or "no reason given"))
        message = json.loads(line)
        if message.get("ok") is False:
            raise TransportError("the target refused the checkpoint: %s" % message.get("error"))
        return message

    started = time.monotonic()
    channel.sendall(json.dumps({"manifest": manifest, "compress": compress, "probe": probe}).encode() + b"\n")
    have = reply().get("have", False)
    sent = 0
    if not have and not probe:
        for entry in manifest["files"]:
            for frame in _frames(os.path.join(bundle_dir, entry["name"]), compress):
                channel.sendall(frame)
                sent += len(frame)
        reply()
    channel.shutdown_write()
    channel.recv_exit_status()
    channel.close()
    return {"have": have, "sent_bytes": sent, "seconds": round(time.monotonic() - started, 3)}
