"""The systemd watchdog fed by the app's health: ``WATCHDOG=1`` is sent only while the health check passes, so
a box whose streams stopped delivering (the same check as /healthz) is restarted by systemd
(``WatchdogSec=`` with ``Restart=on-failure``), and so is one whose process hangs.

    feeder = WatchdogFeeder(notifier, view.health, watchdog_interval_s())   # None: no watchdog asked for
    feeder.start(); ...; feeder.stop()
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Mapping, Optional, Tuple, Union

from service.sd_notify import Notifier

Health = Callable[[], Union[bool, Tuple[bool, Any]]]  # LiveView.health gives (healthy, details)


def watchdog_interval_s(environ: Optional[Mapping[str, str]] = None) -> Optional[float]:
    """Half of systemd's ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3)'s advice), when it is meant for this
    process (``$WATCHDOG_PID`` unset or ours); None when no watchdog is asked for."""
    env = os.environ if environ is None else environ
    pid, usec = env.get("WATCHDOG_PID"), env.get("WATCHDOG_USEC", "")
    if pid is not None and pid != str(os.getpid()):
        return None
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2e6


class WatchdogFeeder:
    """A thread that, every ``interval_s``, asks ``health`` and sends WATCHDOG=1 if it passes; each change of
    health is also sent as STATUS=, so ``systemctl status`` says why the watchdog is about to fire."""

    def __init__(self, notifier: Notifier, health: Health, interval_s: float) -> None:
        self.notifier, self.health, self.interval_s = notifier, health, interval_s
        self.fed = self.withheld = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._last_status: Optional[str] = None

    def start(self) -> "WatchdogFeeder":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def feed_once(self) -> bool:
        """One check: WATCHDOG=1 sent (True) or withheld (False)."""
        healthy, details = self._check()
        status = "healthy" if healthy else f"unhealthy: {details}"
        if status != self._last_status:
            self.notifier.status(status)
            self._last_status = status
        if healthy:
            self.notifier.send("WATCHDOG=1")
            self.fed += 1
        else:
            self.withheld += 1
        return healthy

    def _check(self) -> Tuple[bool, str]:
        try:
            answer = self.health()
        except Exception as exc:  # a health check that fails is not health; the watchdog then fires
            return False, f"health check failed: {type(exc).__name__}: {exc}"
        healthy, details = answer if isinstance(answer, tuple) else (answer, "")
        if isinstance(details, dict):
            details = details.get("failing", details)
        return bool(healthy), str(details)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.feed_once()
            self._stop.wait(self.interval_s)
