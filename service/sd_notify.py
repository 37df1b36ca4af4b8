"""sd_notify(3) without libsystemd: a datagram to the unix socket systemd names in ``$NOTIFY_SOCKET``.

    notifier = Notifier.from_environment()      # does nothing when not started by systemd (Type=notify)
    notifier.ready("4 streams")                 # READY=1 and STATUS=...
    notifier.send("WATCHDOG=1")

A name starting with ``@`` is an abstract socket (Linux): its first byte is NUL. A send that fails (the
manager gone, its queue full) is reported as False, never raised: the service's own work comes first.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Mapping, Optional

MAX_STATUS_CHARS = 200  # systemctl status shows one line


class Notifier:
    def __init__(self, address: Optional[str]) -> None:
        self.address = address
        self._socket: Optional[socket.socket] = None
        self._lock = threading.Lock()  # the watchdog thread and the app both send

    @classmethod
    def from_environment(cls, environ: Optional[Mapping[str, str]] = None) -> "Notifier":
        """The socket of ``$NOTIFY_SOCKET``; a unix path or an abstract name only (systemd 254's ``vsock:``
        addresses are for virtual machines, not a camera box: treated as none)."""
        address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET") or None
        if address is not None and not address.startswith(("/", "@")):
            address = None
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        """``message`` (``KEY=VALUE`` lines) sent; False when there is no socket or sending failed."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.sendto(message.encode("utf-8"), target)
            except OSError:
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_STATUS_CHARS]
