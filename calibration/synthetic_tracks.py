"""Deterministic synthetic tracking set: videos of moving shapes the demo model knows, with ground truth.

Every sequence is drawn from ``numpy.random.default_rng([seed, TRACKS_STREAM, index])`` with the demo data
set's shapes and backgrounds (:mod:`calibration.synthetic`), so the same seed gives the same frames and
tracks. Each sequence has:

- two objects on constant-velocity paths that cross each other (the later-drawn one hides part of the other);
- an object on a turning path (constant speed, heading changing by 0.02-0.05 rad per frame);
- an object entering the frame from outside, later in the sequence, and leaving it;
- sometimes one more object on a straight or turning path;
- an occluding band (a vertical strip, wider than the shapes, where the background is in front of every
  object) sweeping across the frame twice, fast: every object it passes vanishes for a few frames.

Layout written under ``root`` (MOTChallenge's)::

    <seq>/img1/000001.jpg ...        frames, JPEG quality 92
    <seq>/gt/gt.txt                  frame, id, left, top, width, height, 1, class index, visibility
    <seq>/seqinfo.ini                name, frame rate, length, size
    DATASET.json                     seed, sequences, frames, generator version

Ground truth has a row for every object with any pixel in the frame: boxes are the whole shape's box
clipped to the frame (1-based left/top as in MOT), ``visibility`` the fraction of the shape's pixels seen
(outside the frame, behind another object or the band count as hidden). Evaluations keep rows with
visibility >= 0.5 (MOTChallenge's convention for what a detector is expected to find).

    python -m calibration.synthetic_tracks --output /tmp/tracks
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from calibration.synthetic import (
    DEFAULT_SEED,
    SHAPE_CLASSES,
    contrasting_colour,
    default_cache_dir,
    draw_background,
    draw_object,
    generated_folder,
    is_generated,
    shape_polygon,
)
from runtimes.errors import UserError

GENERATOR_VERSION = 1
TRACKS_STREAM = 7  # keeps these random streams apart from the detection data set's (seed, index)
DEFAULT_SEQUENCES = 6
DEFAULT_FRAMES = 80
MIN_FRAMES = 51  # the occluding band's second pass starts between frames // 2 and frames - 25
FRAME_RATE = 15
WIDTH, HEIGHT = 480, 360
_PAD = 120  # shapes are drawn on a canvas this much larger on every side: their hidden part is counted too


@dataclass
class _Mover:
    track_id: int
    kind: str
    width: int
    height: int
    colour: Tuple[int, int, int]
    polygon: Optional[np.ndarray]  # relative to the box's top-left corner (None: ellipse)
    start: int  # first frame (0-based)
    position: np.ndarray  # centre at frame ``start``
    speed: float
    heading: float
    turn: float  # heading change per frame (rad)

    def centre(self, frame: int) -> Optional[np.ndarray]:
        """The centre at ``frame``, or None before the object starts."""
        steps = frame - self.start
        if steps < 0:
            return None
        if self.turn == 0.0:
            return self.position + steps * self.speed * np.array([math.cos(self.heading), math.sin(self.heading)])
        # exact integral of a constant-speed, constant-turn path (a circular arc)
        h0, h1 = self.heading, self.heading + self.turn * steps
        r = self.speed / self.turn
        return self.position + r * np.array([math.sin(h1) - math.sin(h0), math.cos(h0) - math.cos(h1)])


@dataclass
class GroundTruth:
    """One object in one frame: id, class name, (x1, y1, x2, y2) 0-based pixels (x2, y2 exclusive), visibility."""

    track_id: int
    name: str
    box: Tuple[int, int, int, int]
    visibility: float


def _mover(rng: np.random.Generator, track_id: int, background: np.ndarray, start: int, position: np.ndarray,
           speed: float, heading: float, turn: float) -> _Mover:
    kind = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
    size = rng.uniform(72, 110)
    aspect = math.exp(rng.uniform(math.log(0.75), math.log(1.33)))
    w, h = int(size * math.sqrt(aspect)), int(size / math.sqrt(aspect))
    colour = contrasting_colour(rng, background)
    return _Mover(track_id, kind, w, h, colour, shape_polygon(kind, (0, 0, w, h), rng), start,
                  np.asarray(position, np.float64), speed, heading, turn)


def _plan(rng: np.random.Generator, frames: int, background: np.ndarray) -> List[_Mover]:
    movers: List[_Mover] = []
    # two crossing paths: meet at point m on frame tm
    m = np.array([rng.uniform(0.3, 0.7) * WIDTH, rng.uniform(0.3, 0.7) * HEIGHT])
    tm = int(rng.integers(frames // 3, 2 * frames // 3))
    h1 = rng.uniform(-math.pi, math.pi)
    h2 = h1 + rng.choice([-1, 1]) * rng.uniform(1.2, 2.0)
    for heading in (h1, h2):
        speed = rng.uniform(4.5, 7.0)
        start_pos = m - tm * speed * np.array([math.cos(heading), math.sin(heading)])
        movers.append(_mover(rng, len(movers) + 1, background, 0, start_pos, speed, heading, 0.0))
    # a turning path from inside the frame
    pos = np.array([rng.uniform(0.25, 0.75) * WIDTH, rng.uniform(0.25, 0.75) * HEIGHT])
    turn = rng.choice([-1, 1]) * rng.uniform(0.02, 0.05)
    movers.append(_mover(rng, len(movers) + 1, background, 0, pos, rng.uniform(4.0, 6.0),
                         rng.uniform(-math.pi, math.pi), turn))
    # one entering from outside later on, crossing the frame and leaving
    side = int(rng.integers(4))
    along = rng.uniform(0.25, 0.75)
    starts = {0: (-45, along * HEIGHT, 0.0), 1: (WIDTH + 45, along * HEIGHT, math.pi),
              2: (along * WIDTH, -45, math.pi / 2), 3: (along * WIDTH, HEIGHT + 45, -math.pi / 2)}
    x, y, heading = starts[side]
    movers.append(_mover(rng, len(movers) + 1, background, int(rng.integers(5, frames // 3)), np.array([x, y]),
                         rng.uniform(7.0, 10.0), heading + rng.uniform(-0.3, 0.3), 0.0))
    if rng.uniform() < 0.5:
        pos = np.array([rng.uniform(0.2, 0.8) * WIDTH, rng.uniform(0.2, 0.8) * HEIGHT])
        turn = 0.0 if rng.uniform() < 0.5 else rng.choice([-1, 1]) * rng.uniform(0.02, 0.04)
        movers.append(_mover(rng, len(movers) + 1, background, 0, pos, rng.uniform(3.5, 6.0),
                             rng.uniform(-math.pi, math.pi), turn))
    return movers


def _sweeps(rng: np.random.Generator, frames: int) -> List[Tuple[int, float, int, float]]:
    """Two passes of the occluding band: (first frame, left edge then, width, pixels per frame)."""
    out = []
    for first in (int(rng.integers(5, frames // 3)), int(rng.integers(frames // 2, frames - 25))):
        width = int(rng.integers(120, 150))
        speed = float(rng.uniform(26, 34)) * (1 if rng.uniform() < 0.5 else -1)
        out.append((first, -float(width) if speed > 0 else float(WIDTH), width, speed))
    return out


def _band_mask(sweeps: Sequence[Tuple[int, float, int, float]], t: int, shape: Tuple[int, int]) -> np.ndarray:
    """Canvas pixels the band hides at frame ``t`` (the band shows the background in front of the shapes)."""
    band = np.zeros(shape, dtype=bool)
    for first, left, width, speed in sweeps:
        if t >= first:
            x = int(round(left + (t - first) * speed))
            band[:, max(0, _PAD + x):max(0, _PAD + x + width)] = True
    return band


def render_sequence(seed: int, index: int, frames: int = DEFAULT_FRAMES
                    ) -> Iterator[Tuple[np.ndarray, List[GroundTruth]]]:
    """Frames of sequence ``index``: (H, W, 3) uint8 BGR image and the ground truth of every object in view."""
    rng = np.random.default_rng([seed, TRACKS_STREAM, index])
    background = draw_background(rng, HEIGHT, WIDTH)
    movers = _plan(rng, frames, background)
    sweeps = _sweeps(rng, frames)
    noise_rng = np.random.default_rng([seed, TRACKS_STREAM, index, 1])
    for t in range(frames):
        canvas = np.zeros((HEIGHT + 2 * _PAD, WIDTH + 2 * _PAD, 3), np.uint8)
        canvas[_PAD:_PAD + HEIGHT, _PAD:_PAD + WIDTH] = background
        masks: List[Tuple[_Mover, Tuple[int, int, int, int], np.ndarray]] = []
        for mover in movers:  # drawn in order: later ones in front
            centre = mover.centre(t)
            if centre is None:
                continue
            x1 = int(round(centre[0] - mover.width / 2)) + _PAD
            y1 = int(round(centre[1] - mover.height / 2)) + _PAD
            box = (x1, y1, x1 + mover.width, y1 + mover.height)
            if x1 < 0 or y1 < 0 or box[2] > canvas.shape[1] or box[3] > canvas.shape[0]:
                continue  # far outside the frame
            mask = np.zeros(canvas.shape[:2], np.uint8)
            poly = None if mover.polygon is None else mover.polygon + np.array([x1, y1], np.int32)
            draw_object(mask, box, poly, 255)
            draw_object(canvas, box, poly, mover.colour)
            for _, _, earlier in masks:
                earlier[mask > 0] = 0
            masks.append((mover, box, mask))
        band = _band_mask(sweeps, t, canvas.shape[:2])
        canvas[band] = np.pad(background, ((_PAD, _PAD), (_PAD, _PAD), (0, 0)))[band]
        image = canvas[_PAD:_PAD + HEIGHT, _PAD:_PAD + WIDTH]
        # sensor noise, so no two frames are alike
        image = np.clip(image.astype(np.int16) + noise_rng.normal(0, 3, image.shape).astype(np.int16), 0, 255)
        truth: List[GroundTruth] = []
        for mover, box, mask in masks:
            full = float(np.count_nonzero(mask)) or 1.0
            mask[band] = 0
            seen = float(np.count_nonzero(mask[_PAD:_PAD + HEIGHT, _PAD:_PAD + WIDTH]))
            x1, y1 = max(box[0] - _PAD, 0), max(box[1] - _PAD, 0)
            x2, y2 = min(box[2] - _PAD, WIDTH), min(box[3] - _PAD, HEIGHT)
            if x2 <= x1 or y2 <= y1:
                continue
            truth.append(GroundTruth(mover.track_id, mover.kind, (x1, y1, x2, y2), round(seen / full, 4)))
        yield image.astype(np.uint8), truth


def dataset_description(seed: int, sequences: int, frames: int) -> dict:
    return {"generator": "ssd-edge synthetic tracks", "version": GENERATOR_VERSION, "seed": seed,
            "sequences": sequences, "frames": frames, "frame_rate": FRAME_RATE, "size": [WIDTH, HEIGHT],
            "classes": list(SHAPE_CLASSES)}


def sequence_name(index: int) -> str:
    return f"shapes-{index:02d}"


def _check_size(sequences: int, frames: int) -> None:
    if sequences < 1 or frames < MIN_FRAMES:
        raise UserError(f"a tracking set of {sequences} sequence(s) x {frames} frames: give at least 1 sequence "
                        f"of at least {MIN_FRAMES} frames (default: {DEFAULT_SEQUENCES} x {DEFAULT_FRAMES})")


def generate(root: Path, seed: int = DEFAULT_SEED, sequences: int = DEFAULT_SEQUENCES,
             frames: int = DEFAULT_FRAMES) -> Path:
    """Write the set under ``root`` (replaced whole, via a temporary folder) and return ``root``."""
    import cv2

    _check_size(sequences, frames)
    root = Path(root)
    with generated_folder(root, dataset_description(seed, sequences, frames)) as tmp:
        for index in range(sequences):
            name = sequence_name(index)
            folder = tmp / name
            (folder / "img1").mkdir(parents=True)
            (folder / "gt").mkdir()
            rows: List[str] = []
            for t, (image, truth) in enumerate(render_sequence(seed, index, frames)):
                cv2.imwrite(str(folder / "img1" / f"{t + 1:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
                for gt in truth:
                    x1, y1, x2, y2 = gt.box
                    rows.append(f"{t + 1},{gt.track_id},{x1 + 1},{y1 + 1},{x2 - x1},{y2 - y1},1,"
                                f"{SHAPE_CLASSES.index(gt.name) + 1},{gt.visibility}\n")
            (folder / "gt" / "gt.txt").write_text("".join(rows))
            (folder / "seqinfo.ini").write_text(
                f"[Sequence]\nname={name}\nimDir=img1\nframeRate={FRAME_RATE}\nseqLength={frames}\n"
                f"imWidth={WIDTH}\nimHeight={HEIGHT}\nimExt=.jpg\n")
    return root


def ensure_tracking_set(root: Optional[Path] = None, seed: int = DEFAULT_SEED, sequences: int = DEFAULT_SEQUENCES,
                        frames: int = DEFAULT_FRAMES, verbose: bool = True) -> Path:
    """The tracking set's folder, generated on first use (or when made by other settings)."""
    root = Path(root) if root is not None else default_cache_dir() / f"synthetic-tracks-{seed}"
    wanted = dataset_description(seed, sequences, frames)
    if is_generated(root, wanted):
        return root
    _check_size(sequences, frames)
    if verbose:
        print(f"Generating the tracking set (seed {seed}, {sequences} x {frames} frames) in {root} ...", flush=True)
    return generate(root, seed, sequences, frames)


def sequences_of(root: Path) -> List[Path]:
    """The sequence folders of a set, in order."""
    return sorted(p for p in Path(root).iterdir() if (p / "gt" / "gt.txt").is_file())


def read_ground_truth(sequence: Path, min_visibility: float = 0.0) -> Dict[int, List[GroundTruth]]:
    """{frame number (1-based): [GroundTruth]} from ``<sequence>/gt/gt.txt``, rows below ``min_visibility`` left out."""
    out: Dict[int, List[GroundTruth]] = {}
    for line in (Path(sequence) / "gt" / "gt.txt").read_text().splitlines():
        f, tid, left, top, w, h, _, cls, vis = line.split(",")
        if float(vis) < min_visibility:
            continue
        x1, y1 = int(float(left)) - 1, int(float(top)) - 1
        out.setdefault(int(f), []).append(GroundTruth(int(tid), SHAPE_CLASSES[int(cls) - 1],
                                                      (x1, y1, x1 + int(float(w)), y1 + int(float(h))), float(vis)))
    return out


def frame_paths(sequence: Path) -> List[Path]:
    return sorted((Path(sequence) / "img1").glob("*.jpg"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, help="folder to write (default: the cache's synthetic-tracks-SEED)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="default: %(default)s")
    parser.add_argument("--sequences", type=int, default=DEFAULT_SEQUENCES, help="default: %(default)s")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="per sequence (default: %(default)s)")
    args = parser.parse_args(argv)
    root = ensure_tracking_set(args.output, args.seed, args.sequences, args.frames)
    print(root)
    return 0


if __name__ == "__main__":
    from runtimes.cli import run_cli

    raise SystemExit(run_cli(main))
