"""A device's warm worker: one long-lived process that handles every message of its SuperNode.

``fedmer device-worker --socket PATH`` runs beside the device's
``flower-supernode``, under the same operator account, with the node config's
``device-worker`` set to ``PATH``. It loads fedmer's ClientApp (torch, the
training code, the accountants) and the device's data once; each message's
``flwr-clientapp`` process then only passes the message on
(:mod:`client.worker_link`). The handlers, the mods around them (SecAgg+, the
payload guard) and everything they write (ledger, receipts) are the same code
as without a worker; only the process they run in changes.

Messages are handled one at a time, in the order they arrive, as a SuperNode
sends them. A handler's exception becomes the reply's error, as it would in
the ClientApp process, and the worker goes on. A worker serves the device
code it started with: a message from a run whose app ships other code
(``worker_link.code_digest``) is refused, naming both digests; restart the
worker after updating fedmer.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
import traceback
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from types import FrameType

from flwr.clientapp import ClientApp

from client.worker_link import (
    FAILED,
    OK,
    DeviceWorkerError,
    check_socket_path,
    code_digest,
    decode_call,
    encode_call,
    key_path,
)

log = logging.getLogger(__name__)


def serve(socket_path: Path, stop: threading.Event | None = None, torch_threads: int = 1) -> None:
    """Handle messages at ``socket_path`` until ``stop`` is set (or SIGTERM/SIGINT).

    ``torch_threads`` caps torch's intra-op threads. One is the default: a
    device's model and batches are small, so extra threads gain little, and
    their spin-waits cost much when the cores are busy with the SuperNode's
    processes (or, on loopback, with other devices').
    """
    if torch_threads < 1:
        raise DeviceWorkerError(f"--torch-threads must be at least 1, not {torch_threads}")
    from client.client_app import app

    _warm_up(torch_threads)
    digest = code_digest()
    listener = _listen(socket_path)
    stop = stop or _stop_on_signals()
    # accept() blocks; closing the listener from another thread does not wake
    # it, so a stop also connects once to let the loop see it.
    waker = threading.Thread(target=_wake_on_stop, args=(stop, socket_path), daemon=True)
    waker.start()
    log.info(
        "device worker ready at %s (device code %s, torch threads %d)",
        socket_path,
        digest[:12],
        torch_threads,
    )
    try:
        while not stop.is_set():
            try:
                conn = listener.accept()
            except (AuthenticationError, EOFError, OSError) as err:
                log.warning("device worker: a connection was refused: %r", err)
                continue
            with conn:
                if not stop.is_set():
                    _handle(conn, app, digest)
    finally:
        listener.close()
        key_path(socket_path).unlink(missing_ok=True)
        socket_path.unlink(missing_ok=True)


def _warm_up(torch_threads: int) -> None:
    """Import now what the first training message would otherwise pay for."""
    import dp_accounting  # noqa: F401  σ calibration
    import torch

    torch.set_num_threads(torch_threads)

    import client.training_round  # noqa: F401


def _listen(socket_path: Path) -> Listener:
    check_socket_path(socket_path)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        if _answers(socket_path):
            raise DeviceWorkerError(f"a device worker already serves {socket_path}")
        socket_path.unlink()  # left by a worker that was killed
    key = secrets.token_bytes(32)
    old_umask = os.umask(0o177)  # the socket and its key: this account only
    try:
        listener = Listener(str(socket_path), family="AF_UNIX", authkey=key)
        tmp = key_path(socket_path).with_suffix(".tmp")
        tmp.write_bytes(key)
    finally:
        os.umask(old_umask)
    # The key appears last and whole: a ClientApp that reads it can connect.
    tmp.replace(key_path(socket_path))
    return listener


def _answers(socket_path: Path) -> bool:
    try:
        key = key_path(socket_path).read_bytes()
        Client(str(socket_path), family="AF_UNIX", authkey=key).close()
    except (OSError, EOFError, AuthenticationError):
        return False
    return True


def _handle(conn: Connection, app: ClientApp, digest: str) -> None:
    try:
        theirs = conn.recv_bytes().decode()
        message, context = conn.recv_bytes(), conn.recv_bytes()
    except (EOFError, OSError) as err:
        log.warning("device worker: an incomplete request: %r", err)
        return
    if theirs != digest:
        _send(
            conn,
            FAILED,
            f"this worker runs device code {digest[:12]}, the run's app ships {theirs[:12]}: "
            "restart `fedmer device-worker` with the app's fedmer version".encode(),
        )
        return
    started = time.perf_counter()
    try:
        msg, ctx = decode_call(message, context)
        reply = app(msg, ctx)
    except Exception as err:  # noqa: BLE001  reported to the ClientApp, as Flower would
        log.error("device worker: the ClientApp raised\n%s", traceback.format_exc())
        _send(conn, FAILED, f"the ClientApp raised {type(err).__name__}: {err}".encode())
        return
    _send(conn, OK, *encode_call(reply, ctx))
    # The operator's view of where a round's time goes on this device.
    log.info(
        "%s message of round %s handled in %.3f s",
        msg.metadata.message_type,
        msg.metadata.group_id or "-",
        time.perf_counter() - started,
    )


def _send(conn: Connection, *parts: bytes) -> None:
    try:
        for part in parts:
            conn.send_bytes(part)
    except OSError as err:
        # The ClientApp process is gone (its SuperNode was stopped): what the
        # handler wrote on the device stays, as after a crash mid-reply.
        log.warning("device worker: the reply could not be sent: %r", err)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def _request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    return stop


def _wake_on_stop(stop: threading.Event, socket_path: Path) -> None:
    stop.wait()
    _answers(socket_path)  # one connection is enough to wake accept()
