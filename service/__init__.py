"""Running the camera as a systemd service (issue #27): readiness, status and the watchdog through sd_notify,
in pure Python (no libsystemd binding to install on a Jetson). See docs/deploy.md."""
