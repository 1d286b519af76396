"""The wire between a device's Flower ClientApp process and its warm device worker.

Flower 1.41 starts a fresh ``flwr-clientapp`` process for every message a
SuperNode receives; importing torch and fedmer's device code in each one
costs seconds per message (``docs/benchmarks.md``). A device whose node config
names ``device-worker`` (a Unix socket) keeps one long-lived worker process
(``fedmer device-worker``) that has all of it loaded, and its ClientApp
process only hands each message to that worker and returns the reply.

What crosses the socket is what Flower itself passes to a ClientApp: the
message and the context, as Flower's own protobuf serialization, and back the
reply and the context (whose ``state`` the SuperNode keeps between messages,
for SecAgg+'s stages). The socket is local to the device: 0600, and a
connection must also answer a challenge over a 32-byte key the worker writes
(0600) next to it (``multiprocessing.connection``'s HMAC handshake).

This module is all a ClientApp process imports on that path: Flower's serde
and the standard library, no torch and none of the training code.
"""

from __future__ import annotations

import hashlib
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection
from pathlib import Path

from flwr.app import Context, Message
from flwr.common.serde import (
    context_from_proto,
    context_to_proto,
    message_from_proto,
    message_to_proto,
)
from flwr.proto.message_pb2 import Context as ProtoContext
from flwr.proto.message_pb2 import Message as ProtoMessage

NODE_CONFIG_KEY = "device-worker"
KEY_SUFFIX = ".key"
OK, FAILED = b"ok", b"failed"
# sockaddr_un holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107
# The device code whose behaviour a reply depends on: both sides hash it, so a
# worker never answers for an app version other than the one the run ships.
CODE_PACKAGES = ("client", "common")


class DeviceWorkerError(RuntimeError):
    """The device worker could not be reached or could not handle the message; says why."""


def key_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + KEY_SUFFIX)


def check_socket_path(socket_path: Path) -> None:
    if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
        raise DeviceWorkerError(
            f"node config {NODE_CONFIG_KEY}={str(socket_path)!r} is longer than a Unix "
            f"socket path may be ({MAX_SOCKET_PATH} bytes); choose a shorter path"
        )


def code_digest(root: Path | None = None) -> str:
    """SHA-256 over the device code's source files (relative path and bytes)."""
    root = root or Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def encode_call(msg: Message, context: Context) -> tuple[bytes, bytes]:
    return (
        message_to_proto(msg).SerializeToString(),
        context_to_proto(context).SerializeToString(),
    )


def decode_call(message: bytes, context: bytes) -> tuple[Message, Context]:
    return (
        message_from_proto(ProtoMessage.FromString(message)),
        context_from_proto(ProtoContext.FromString(context)),
    )


def forward(socket_path: Path, msg: Message, context: Context) -> Message:
    """Have the device worker at ``socket_path`` handle ``msg``; its reply, and its
    changes to ``context.state``, as if the handler had run in this process."""
    check_socket_path(socket_path)
    conn = _connect(socket_path)
    with conn:
        try:
            conn.send_bytes(code_digest().encode())
            for part in encode_call(msg, context):
                conn.send_bytes(part)
            status = conn.recv_bytes()
            if status != OK:
                raise DeviceWorkerError(
                    f"device worker at {socket_path}: {conn.recv_bytes().decode()}"
                )
            reply, handled = decode_call(conn.recv_bytes(), conn.recv_bytes())
        except (EOFError, OSError) as err:
            raise DeviceWorkerError(
                f"device worker at {socket_path} stopped while handling the message ({err!r})"
            ) from err
    context.state = handled.state
    return reply


def _connect(socket_path: Path) -> Connection:
    started = f"start it with: fedmer device-worker --socket {socket_path}"
    try:
        key = key_path(socket_path).read_bytes()
    except OSError as err:
        raise DeviceWorkerError(
            f"device worker key {key_path(socket_path)} cannot be read ({err.strerror}): "
            f"no worker serves node config {NODE_CONFIG_KEY}={str(socket_path)!r}; {started}"
        ) from err
    try:
        return Client(str(socket_path), family="AF_UNIX", authkey=key)
    except AuthenticationError as err:
        raise DeviceWorkerError(
            f"the device worker at {socket_path} refused the key in {key_path(socket_path)} "
            f"({err}): the key file belongs to another worker; restart it"
        ) from err
    except OSError as err:
        raise DeviceWorkerError(
            f"no device worker answers at {socket_path} ({err.strerror or err!r}); {started}"
        ) from err
