"""Evidence for every event (issue #26): a ring buffer of each stream's encoded video, clips cut from it
without re-encoding when events fire, a JSON sidecar per clip, snapshots of the tracks that fired them, and
retention of what is on disk. See docs/recording.md.

Modules, one concept each: ``options`` (the flags, checked), ``units`` (an encoded access unit), ``ring``
(the time- and byte-bounded buffer), ``planner`` (events to clip windows), ``paths`` (names on disk,
temporaries), ``gst`` (PyGObject, imported lazily), ``encoders`` (the encoder for raw sources), ``tap`` (a
source's parsed video tee'd into decoded frames and encoded units), ``clip_writer`` (units to an MP4),
``sidecar`` (the clip's JSON), ``snapshots``, ``retention``, ``disk`` (the free-space guard) and
``recorder`` (per stream, all of them together).
"""
