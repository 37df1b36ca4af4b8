"""What a run writes: one annotated video per stream and one JSON-lines file for all of them
(:class:`runtimes.atomic.JsonLines`), each written to a temporary file and renamed into place when the run
ends (so an interrupted run leaves finished files, and a crash no half-written one where a good one was)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from runtimes.atomic import check_output_dir, move_into_place, temporary_beside
from runtimes.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".avi")


def video_paths(output: Optional[Path], names: List[str]) -> Dict[str, Optional[Path]]:
    """Where each stream's video goes: ``--output X.mp4`` (one stream), or ``--output DIR`` -> DIR/NAME.mp4."""
    if output is None:
        return {name: None for name in names}
    if output.suffix.lower() in VIDEO_SUFFIXES:
        if len(names) > 1:
            raise UserError(f"--output {output}: a video file takes one stream; give a folder for {len(names)} "
                            "streams (one NAME.mp4 each)")
        return {names[0]: output}
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output}: not a folder, nor a .mp4 or .avi file")
    if not output.exists():
        check_output_dir(output)  # its parent must exist and be writable
        output.mkdir()
    return {name: output / f"{name}.mp4" for name in names}


class VideoOutput:
    """An annotated video written frame by frame (MJPG for .avi, mp4v for .mp4) at ``fps``."""

    def __init__(self, path: Path, fps: float) -> None:
        check_output_dir(path)
        self.path, self.fps = path, fps
        self._temp: Optional[Path] = None
        self._writer: Any = None

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            self._temp = temporary_beside(self.path)
            fourcc = cv2.VideoWriter.fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self._writer = cv2.VideoWriter(str(self._temp), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self._writer.isOpened():
                raise UserError(f"{self.path}: OpenCV cannot write this video format; use .mp4 or .avi")
        self._writer.write(frame)

    def close(self) -> None:
        """Finish the file and rename it into place (nothing is written for a stream without frames)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            assert self._temp is not None
            move_into_place([self._temp], [self.path])
