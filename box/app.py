"""The camera run from a configuration file (``apps/camera.py --config box.yaml``, issue #27): the file and the
flags over it checked before anything starts, the effective configuration printed (secrets redacted), the box
run (box/runner.py) with the control API on its web view, SIGHUP as a reload, each API change written back
with ``--config-writeback``, and systemd told when it is ready and fed its watchdog from the health check.

    start = box_start(parser, argv, args)     # UserError (exit 2) with every problem, one line each
    summary = run_box(start, stop)
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration file (docs/configuration.md)")
    group.add_argument("--config", type=Path, metavar="FILE",
                       help="models, streams, zones, sinks, recording and the web view from this YAML or JSON "
                            "file; flags given as well override it; enables the control API (/api) on the web view and "
                            "SIGHUP to re-read it")
    group.add_argument("--config-writeback", action="store_true",
                       help="write each change made through the control API to the --config file (atomically), "
                            "so a restart comes back in the same state")


@dataclass(frozen=True)
class BoxStart:
    """What the box starts from: the effective ``config`` (file and flags), the file's ``path`` and own data
    (without the flags: what a write-back edits), the flags ``given`` on the command line and every flag's
    ``defaults``, and ``writeback``."""

    config: Any  # boxconfig.config.BoxConfig
    path: Path
    file_data: Dict[str, Any]
    given: Mapping[str, Any]
    defaults: Mapping[str, Any]
    writeback: bool

    def read_again(self) -> Any:
        """The file read again with the same flags over it (a reload keeps what the command line set)."""
        from boxconfig.loading import read_config_data

        return _flags_over(read_config_data(self.path), self.given, self.path, self.defaults)


def _flags_over(file_data: Any, given: Mapping[str, Any], path: Path, defaults: Mapping[str, Any]) -> Any:
    from boxconfig.flags import effective_config

    return effective_config(file_data, given, str(path), defaults, path.parent.resolve())


def box_start(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]], args: argparse.Namespace
              ) -> BoxStart:
    """The configuration checked, flags over the file; UserError listing every problem (one line each)."""
    from boxconfig.defaults import flag_defaults
    from boxconfig.flags import given_flags
    from boxconfig.loading import read_config_data

    given = given_flags(parser, list(argv) if argv is not None else None)
    path = Path(args.config)
    defaults = flag_defaults(parser)
    file_data = read_config_data(path)
    return BoxStart(_flags_over(file_data, given, path, defaults), path, file_data, given, defaults,
                    bool(args.config_writeback))


def configuration_line(config: Any) -> str:
    """``configuration: {...}``: the effective configuration as one JSON line, secrets redacted."""
    from boxconfig.config import to_data
    from boxconfig.redaction import redacted

    return "configuration: " + json.dumps(redacted(to_data(config)))


def on_sighup(control: Any, log: Callable[[str], None]) -> Callable[[int, Any], None]:
    """The SIGHUP handler: the reload on a thread of its own (a signal handler must not wait on locks the
    interrupted code may hold); its outcome logged in one line."""

    def reload() -> None:
        try:
            log(f"SIGHUP: reloaded: {json.dumps(control.reload())}")
        except Exception as exc:  # a bad file keeps the running configuration (ControlError says why)
            log(f"SIGHUP: configuration kept: {getattr(exc, 'message', None) or exc}")

    def handler(_signum: int, _frame: Any) -> None:
        threading.Thread(target=reload, name="reload", daemon=True).start()

    return handler


def install_sighup(control: Any, log: Callable[[str], None]) -> None:
    signal.signal(signal.SIGHUP, on_sighup(control, log))


def watchdog(health: Callable[[], Any], log: Callable[[str], None]) -> List[Any]:
    """READY=1 to systemd, and the watchdog fed while ``health`` passes (when the unit asks for one); what to
    stop at the end."""
    from service.sd_notify import Notifier
    from service.watchdog import WatchdogFeeder, watchdog_interval_s

    notifier = Notifier.from_environment()
    notifier.ready("running")
    interval = watchdog_interval_s()
    if interval is None:
        return []
    log(f"watchdog: fed every {interval:g} s while the health check passes")
    return [WatchdogFeeder(notifier, health, interval).start()]


def flushed_print(text: str) -> None:
    print(text, flush=True)  # (a service's stdout is a pipe to the journal: lines as they happen)


def run_box(start: BoxStart, stop: threading.Event, log: Callable[[str], None] = flushed_print) -> Dict[str, Any]:
    """Run the box of ``start`` until its streams end or ``stop`` is set; the summary. The control API is
    served once every model is loaded and every stream open; SIGHUP reloads from then on."""
    from box.observers import MergedStatuses
    from box.runner import BoxRunner
    from box.writeback import WritebackControl

    # (SIGHUP's default action ends the process: a reload sent while the models load must not)
    signal.signal(signal.SIGHUP, lambda *_: log("SIGHUP: the box is still starting; send it again once it runs"))
    view = live_view(start.config, log)
    try:
        runner = BoxRunner(start.config, log, observers=[MergedStatuses(view)], label=str(start.path))
        control: Any = _controller(runner, start)
        if start.writeback:
            control = WritebackControl(control, start.path, start.file_data, start.defaults, log)
        runner.open(stop)
        if runner.recording is not None:  # /healthz says why it is paused, /metrics counts clips
            view.add_component("recording", runner.recording.recording)
        view.set_control(control)
        install_sighup(control, log)
        log(f"box: running {len(start.config.streams)} stream(s) on {len(start.config.models)} model(s)")
        feeders = watchdog(view.health, log)
        try:
            return runner.run(stop)
        finally:
            for feeder in feeders:
                feeder.stop()
    finally:
        view.close()


def _controller(runner: Any, start: BoxStart) -> Any:
    """The box's control (box/control_impl.py) whose reloads put the command line's flags over the file."""
    from box.control_impl import BoxController

    class FlagsOverFile(BoxController):
        def read_config(self) -> Any:
            return start.read_again()

    return FlagsOverFile(runner, start.defaults, start.path)


def live_view(config: Any, log: Callable[[str], None]) -> Any:
    """The web view of ``config.webview`` (its server only when a port is set, the RTSP output only with
    ``rtsp_out``); always a LiveView, whose health check feeds the watchdog."""
    from webview.cli import parse_rtsp_out
    from webview.gate import Limits
    from webview.live import LiveView

    web = config.webview
    view = LiveView([s.name for s in config.streams], serve=(web.bind, web.port) if web.port is not None else None,
                    token=web.token, rtsp=parse_rtsp_out(web.rtsp_out) if web.rtsp_out else None, log=log,
                    limits=Limits(header_timeout_s=web.header_timeout_s))
    if view.url is not None:
        log(f"web view: {view.url}" + ("?token=... (token required)" if web.token else "") + "; control API: /api")
    return view
