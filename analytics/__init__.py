"""Tracking, zone and line counting, and event delivery for the camera pipeline (device side: Python 3.8,
numpy 1.x, scipy; OpenCV only for drawing; paho-mqtt only for --mqtt; PyYAML only for YAML zone files).

Modules: ``tracker`` (ByteTrack) over ``kalman`` (batched constant-velocity filter); ``zone_file`` (reading
and checking zone files) and ``zones`` (occupancy, dwell, line crossings); ``events``; ``sinks`` (file,
webhook, MQTT, each on its own thread); ``overlay`` (drawing); ``pipeline`` (:class:`Analytics`, per
stream); ``cli`` (the camera app's options).
"""
