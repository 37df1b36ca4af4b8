"""Zone occupancy and dwell, line crossings: one stream's counts and events, from its tracks.

:class:`StreamCounter` takes each frame's :class:`analytics.tracker.Tracks` and returns the events of that
frame. Each track is a point (its box's anchor). A zone holds the tracks whose point is inside its polygon
(crossing-number test); a track that the tracker loses for a few frames stays inside until it is seen
outside or removed, so a short occlusion is not a leave and an enter. Dwell runs from the first to the last
frame seen inside. A line counts a track when its point moves from one side to the other through the
segment (not around its ends); the side is remembered per track, so jitter on one side never counts, and
crossing back counts once the other way.

Everything per frame is vectorised over the tracks; Python work is per event only.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from analytics.events import Event
from analytics.tracker import Tracks
from analytics.zone_file import LineSpec, StreamZones, ZoneSpec


def anchor_points(boxes: np.ndarray, anchor: str) -> np.ndarray:
    """(N, 4) ``(x1, y1, x2, y2)`` -> (N, 2) points: the centre, or the bottom edge's centre."""
    x = (boxes[:, 0] + boxes[:, 2]) * 0.5
    y = boxes[:, 3] if anchor == "bottom_center" else (boxes[:, 1] + boxes[:, 3]) * 0.5
    return np.stack([x, y], axis=1).astype(np.float64)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N, 2) points, (K, 2) polygon -> (N,) bool: inside (crossing-number rule)."""
    if points.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    px, py = points[:, 0:1], points[:, 1:2]
    straddles = (y1 > py) != (y2 > py)
    dy = np.where(y2 == y1, 1.0, y2 - y1)
    x_at = x1 + (py - y1) * (x2 - x1) / dy
    return ((straddles & (px < x_at)).sum(axis=1) % 2) == 1


class _Table:
    """Per-track rows keyed by track id (sorted), with named numpy columns."""

    def __init__(self, **dtypes: Any) -> None:
        self.ids = np.zeros(0, np.int64)
        self.cols = {k: np.zeros(0, dt) for k, dt in dtypes.items()}

    def find(self, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Row of each id and whether it is there: (N,) int64, (N,) bool."""
        if self.ids.size == 0:
            return np.zeros(ids.shape[0], np.int64), np.zeros(ids.shape[0], bool)
        pos = np.minimum(np.searchsorted(self.ids, ids), self.ids.size - 1)
        return pos, self.ids[pos] == ids

    def take(self, name: str, rows: np.ndarray, found: np.ndarray, fill: Any) -> np.ndarray:
        """Column ``name`` at ``rows`` where ``found``, ``fill`` elsewhere."""
        col = self.cols[name]
        if col.size == 0:
            return np.full(rows.shape[0], fill, col.dtype)
        return np.where(found, col[rows], fill)

    def add(self, ids: np.ndarray, **values: np.ndarray) -> None:
        if ids.size == 0:
            return
        all_ids = np.concatenate([self.ids, ids])
        order = np.argsort(all_ids, kind="stable")
        self.ids = all_ids[order]
        for k, col in self.cols.items():
            self.cols[k] = np.concatenate([col, np.asarray(values[k], col.dtype)])[order]

    def drop(self, rows: np.ndarray) -> None:
        if rows.size == 0:
            return
        keep = np.ones(self.ids.size, bool)
        keep[rows] = False
        self.ids = self.ids[keep]
        for k in self.cols:
            self.cols[k] = self.cols[k][keep]


class _ZoneState:
    def __init__(self, spec: ZoneSpec) -> None:
        self.spec = spec
        self.polygon = spec.points
        self.members = _Table(label=np.int64, enter_frame=np.int64, enter_ts=np.float64, last_frame=np.int64,
                              last_ts=np.float64, alerted=bool)
        self.entered_total = 0


class _LineState:
    def __init__(self, spec: LineSpec) -> None:
        self.spec = spec
        self.a, self.b = spec.points[0], spec.points[1]
        self.sides = _Table(side=np.int8, x=np.float64, y=np.float64)
        self.crossed: Dict[str, Dict[str, int]] = {}  # class name -> {"in": n, "out": n}


class StreamCounter:
    """Counts and events of one stream's zones and lines; :meth:`update` once per frame."""

    def __init__(self, stream: str, spec: StreamZones, class_names: Sequence[str]) -> None:
        self.stream = stream
        self.class_names = list(class_names)
        self._spec = spec
        self._zones: List[_ZoneState] = []
        self._lines: List[_LineState] = []
        self._resolved_size: Optional[Tuple[int, int]] = None
        if not any(z.normalized for z in spec.zones) and not any(ln.normalized for ln in spec.lines):
            self._resolve((1, 1))

    @property
    def zones(self) -> List[ZoneSpec]:
        return [z.spec for z in self._zones]

    def geometry(self) -> Tuple[List[Tuple[str, np.ndarray]], List[Tuple[str, np.ndarray]]]:
        """Pixel geometry for drawing: ([(zone name, (K, 2) polygon)], [(line name, (2, 2) points)])."""
        return ([(z.spec.name, z.polygon) for z in self._zones], [(ln.spec.name, np.stack([ln.a, ln.b]))
                                                                   for ln in self._lines])

    def _resolve(self, size: Tuple[int, int]) -> None:
        """Zones and lines in pixels for frames of ``size`` (width, height); normalised ones are scaled."""
        scale = np.array(size, dtype=np.float64)
        self._zones, self._lines = [], []
        for z in self._spec.zones:
            state = _ZoneState(z)
            state.polygon = z.points * scale if z.normalized else z.points
            self._zones.append(state)
        for ln in self._spec.lines:
            state_line = _LineState(ln)
            points = ln.points * scale if ln.normalized else ln.points
            state_line.a, state_line.b = points[0], points[1]
            self._lines.append(state_line)
        self._resolved_size = size

    def update(self, frame: int, timestamp: float, tracks: Tracks, frame_size: Tuple[int, int]) -> List[Event]:
        """One frame's events. frame_size: (width, height) in pixels (scales normalised coordinates)."""
        if self._resolved_size is None:
            self._resolve(frame_size)
        events: List[Event] = []
        for zone in self._zones:
            self._update_zone(zone, frame, timestamp, tracks, events)
        for line in self._lines:
            self._update_line(line, frame, timestamp, tracks, events)
        return events

    def _name(self, label: int) -> str:
        return self.class_names[label] if 0 <= label < len(self.class_names) else str(label)

    def _update_zone(self, zone: _ZoneState, frame: int, ts: float, tracks: Tracks, events: List[Event]) -> None:
        spec, members = zone.spec, zone.members
        ids, labels = tracks.ids, tracks.labels
        inside = points_in_polygon(anchor_points(tracks.boxes, spec.anchor), zone.polygon)
        if spec.classes is not None:
            inside &= np.isin(labels, spec.classes)
        rows, was = members.find(ids)
        cols = members.cols
        # still inside: extend the stay
        stay = rows[inside & was]
        cols["last_frame"][stay] = frame
        cols["last_ts"][stay] = ts
        # seen outside, or removed by the tracker: leave
        left_rows = rows[~inside & was]
        if tracks.removed.size:
            gone_rows, gone = members.find(tracks.removed)
            left_rows = np.concatenate([left_rows, gone_rows[gone]])
        for r in left_rows.tolist():
            events.append(Event("zone_leave", self.stream, frame, ts, int(members.ids[r]),
                                self._name(int(cols["label"][r])), zone=spec.name,
                                dwell_s=float(cols["last_ts"][r] - cols["enter_ts"][r]),
                                dwell_frames=int(cols["last_frame"][r] - cols["enter_frame"][r] + 1)))
        members.drop(left_rows)
        # new inside: enter
        new = inside & ~was
        if new.any():
            new_ids, new_labels = ids[new], labels[new]
            n = new_ids.size
            members.add(new_ids, label=new_labels, enter_frame=np.full(n, frame), enter_ts=np.full(n, ts),
                        last_frame=np.full(n, frame), last_ts=np.full(n, ts), alerted=np.zeros(n, bool))
            zone.entered_total += n
            for i, lab in zip(new_ids.tolist(), new_labels.tolist()):
                events.append(Event("zone_enter", self.stream, frame, ts, i, self._name(lab), zone=spec.name))
        if spec.dwell_limit_s is not None and members.ids.size:
            # (less a nanosecond: timestamps like 4.1 - 2.1 fall a rounding error short of 2.0)
            over = np.nonzero(~cols["alerted"] & (cols["last_ts"] - cols["enter_ts"] >= spec.dwell_limit_s - 1e-9))[0]
            for r in over.tolist():
                cols["alerted"][r] = True
                events.append(Event("dwell_exceeded", self.stream, frame, ts, int(members.ids[r]),
                                    self._name(int(cols["label"][r])), zone=spec.name,
                                    dwell_s=float(cols["last_ts"][r] - cols["enter_ts"][r]),
                                    dwell_frames=int(cols["last_frame"][r] - cols["enter_frame"][r] + 1)))

    def _update_line(self, line: _LineState, frame: int, ts: float, tracks: Tracks, events: List[Event]) -> None:
        spec, sides = line.spec, line.sides
        keep = np.ones(len(tracks), bool) if spec.classes is None else np.isin(tracks.labels, spec.classes)
        ids, labels = tracks.ids[keep], tracks.labels[keep]
        points = anchor_points(tracks.boxes[keep], spec.anchor)
        direction = line.b - line.a
        rel = points - line.a
        side = np.sign(direction[0] * rel[:, 1] - direction[1] * rel[:, 0]).astype(np.int8)
        rows, known = sides.find(ids)
        cols = sides.cols
        before = sides.take("side", rows, known, 0)
        flipped = (side != 0) & (before != 0) & (before != side)
        if flipped.any():
            # Where the move from the last point with a side to this point meets the line, as a fraction
            # u of the segment a -> b: a crossing only when 0 <= u <= 1 (not around an end).
            prev = np.stack([cols["x"][rows[flipped]], cols["y"][rows[flipped]]], axis=1)
            move = points[flipped] - prev
            denom = direction[0] * move[:, 1] - direction[1] * move[:, 0]
            start = prev - line.a
            u = (start[:, 0] * move[:, 1] - start[:, 1] * move[:, 0]) / np.where(denom == 0, 1e-12, denom)
            through = (u >= 0) & (u <= 1)
            for i, lab, s in zip(ids[flipped][through].tolist(), labels[flipped][through].tolist(),
                                 side[flipped][through].tolist()):
                name = self._name(lab)
                way = "in" if s > 0 else "out"
                per_class = line.crossed.setdefault(name, {"in": 0, "out": 0})
                per_class[way] += 1
                events.append(Event("line_crossed", self.stream, frame, ts, i, name, line=spec.name, direction=way))
        # remember each track's side and the point it was last seen at with one (on the line: no side)
        definite = side != 0
        upd = known & definite
        cols["side"][rows[upd]] = side[upd]
        cols["x"][rows[upd]] = points[upd, 0]
        cols["y"][rows[upd]] = points[upd, 1]
        fresh = ~known & definite
        sides.add(ids[fresh], side=side[fresh], x=points[fresh, 0], y=points[fresh, 1])
        if tracks.removed.size:
            gone_rows, gone = sides.find(tracks.removed)
            sides.drop(gone_rows[gone])

    def counts(self) -> Dict[str, Any]:
        """Live counts: {"zones": {name: {"total", "by_class", "entered"}}, "lines": {name: {"in", "out",
        "by_class": {class: {"in", "out"}}}}}."""
        zones: Dict[str, Any] = {}
        for z in self._zones:
            labels = z.members.cols["label"].tolist()
            by_class: Dict[str, int] = {}
            for lab in labels:
                by_class[self._name(lab)] = by_class.get(self._name(lab), 0) + 1
            zones[z.spec.name] = {"total": len(labels), "by_class": by_class, "entered": z.entered_total}
        lines: Dict[str, Any] = {}
        for ln in self._lines:
            lines[ln.spec.name] = {"in": sum(c["in"] for c in ln.crossed.values()),
                                   "out": sum(c["out"] for c in ln.crossed.values()),
                                   "by_class": {k: dict(v) for k, v in ln.crossed.items()}}
        return {"zones": zones, "lines": lines}
