"""The ONE post-processor: raw SSD outputs of any runtime -> :class:`Detections` in image pixels.

Same results as torchvision's ``SSD.postprocess_detections`` followed by its transform's box rescaling
(softmax, per-class score threshold and top-k candidates, box decoding, clipping, class-wise NMS, best
``max_detections``), computed differently so that it is fast in numpy:

* it works best-first: NMS decides each box from better boxes of its class only, so once
  ``max_detections`` boxes survive among the best W candidates (over all classes), nothing worse can
  enter the result; W starts at ``topk_candidates`` and grows only when NMS removes many boxes;
* candidates come from one ``argpartition`` over the flattened scores; only their boxes are decoded;
* class-wise NMS is OpenCV's C++ greedy NMS, one call per class present.

No Python loop runs over boxes; the only loop over classes is those NMS calls.
"""

from __future__ import annotations

import math
from typing import List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from runtimes.anchors import default_boxes
from runtimes.detections import Detections
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata

# torchvision's BoxCoder clamps dw/dh so exp() stays finite: log(1000 / 16).
BBOX_XFORM_CLIP = np.float32(math.log(1000.0 / 16))


def softmax_by_class(logits: np.ndarray) -> np.ndarray:
    """Softmax of (N, C) logits over classes, returned class-major: (C, N) float32, max-subtracted as torch
    computes it. Class-major because numpy reduces across rows fast and along short rows slowly: the
    max and the sum over C = 21 classes cost a third of what they do on the (N, C) layout."""
    shifted = np.asarray(logits, dtype=np.float32).T.copy()  # the one copy: class-major
    shifted -= shifted.max(axis=0)
    np.exp(shifted, out=shifted)
    # One reciprocal per anchor and a multiply: cheaper than dividing every score, and within an ulp.
    shifted *= np.float32(1.0) / shifted.sum(axis=0)
    return shifted


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of (N, C) logits: (N, C) float32 (a view of the class-major result)."""
    return softmax_by_class(logits).T


class SSDPostprocessor:
    """Turn one image's slice of the network outputs into detections.

    Thresholds default to the model's metadata (torchvision's defaults for the architecture) and can be
    overridden per instance: ``score_threshold`` (keep scores strictly above), ``iou_threshold`` (NMS
    suppresses IoU strictly above), ``topk_candidates`` (per class, before NMS), ``max_detections``.
    """

    def __init__(self, meta: ModelMetadata, *, score_threshold: Optional[float] = None,
                 iou_threshold: Optional[float] = None, topk_candidates: Optional[int] = None,
                 max_detections: Optional[int] = None) -> None:
        self.meta = meta
        self.score_threshold = meta.score_threshold if score_threshold is None else float(score_threshold)
        self.iou_threshold = meta.iou_threshold if iou_threshold is None else float(iou_threshold)
        self.topk_candidates = meta.topk_candidates if topk_candidates is None else int(topk_candidates)
        self.max_detections = meta.max_detections if max_detections is None else int(max_detections)
        self.input_size = (meta.input_height, meta.input_width)
        if meta.output_format == "nms":
            self._check_nms_overrides()
        if meta.output_format == "raw":
            assert meta.anchors is not None  # validated with the metadata
            anchors = default_boxes(meta.anchors, meta.input_height, meta.input_width)
            self._anchor_wh = anchors[:, 2:] - anchors[:, :2]
            self._anchor_ctr = anchors[:, :2] + np.float32(0.5) * self._anchor_wh
            self._coder_weights = np.asarray(meta.box_coder_weights, dtype=np.float32)

    def _check_nms_overrides(self) -> None:
        """A model that runs NMS itself can only be made stricter: a higher score, fewer detections."""
        built = self.meta
        problems = []
        if self.iou_threshold != built.iou_threshold:
            problems.append(f"iou_threshold {self.iou_threshold} (built with {built.iou_threshold})")
        if self.topk_candidates != built.topk_candidates:
            problems.append(f"topk_candidates {self.topk_candidates} (built with {built.topk_candidates})")
        if self.score_threshold < built.score_threshold:
            problems.append(f"score_threshold {self.score_threshold} (built with {built.score_threshold})")
        if self.max_detections > built.max_detections:
            problems.append(f"max_detections {self.max_detections} (built with {built.max_detections})")
        if problems:
            raise UserError(f"this model runs NMS inside, so {', '.join(problems)} cannot apply: rebuild it "
                            "with --nms host, or with these thresholds in its metadata")

    # -- the pieces -----------------------------------------------------------------------------------

    def _window(self, fg: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(anchor index, label, score) of the ``size`` best scores over all classes that pass the threshold
        and rank within their class's ``topk_candidates``, and whether that window holds every passing
        score. ``fg`` holds the foreground scores class-major: (C - 1, N)."""
        # The size-th best per-anchor maximum is a lower bound for the size-th best score overall (those
        # maxima are size distinct candidates), so scores below it can be skipped before partitioning.
        floor = self.score_threshold
        best = fg.max(axis=0)
        if len(best) > size:
            floor = max(floor, float(np.partition(best, len(best) - size)[len(best) - size]))
        above = fg >= floor if floor > self.score_threshold else fg > self.score_threshold
        cls, anchor_idx = np.nonzero(above)
        scores = fg[cls, anchor_idx]
        complete = floor == self.score_threshold and len(scores) <= size
        if len(scores) > size:
            top = np.argpartition(-scores, size - 1)[:size]
            anchor_idx, cls, scores = anchor_idx[top], cls[top], scores[top]
        if len(scores) > self.topk_candidates:
            # Every better score of the same class is inside the window too, so the rank inside the
            # window is the rank in the class: torchvision's per-class top-k, exactly.
            order = np.lexsort((-scores, cls))
            starts = np.flatnonzero(np.r_[True, cls[order][1:] != cls[order][:-1]])
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            inside = np.zeros(len(order), dtype=bool)
            inside[order] = rank < self.topk_candidates
            anchor_idx, cls, scores = anchor_idx[inside], cls[inside], scores[inside]
        return anchor_idx, cls + 1, scores, complete

    def _decode(self, offsets: np.ndarray, anchor_idx: np.ndarray) -> np.ndarray:
        """torchvision ``BoxCoder.decode_single`` for the selected anchors, clipped to the input."""
        rel = offsets / self._coder_weights
        wh = self._anchor_wh[anchor_idx]
        ctr = rel[:, :2] * wh + self._anchor_ctr[anchor_idx]
        size = np.exp(np.minimum(rel[:, 2:], BBOX_XFORM_CLIP)) * wh
        half = np.float32(0.5) * size
        boxes = np.concatenate([ctr - half, ctr + half], axis=1)
        return self._clip(boxes)

    def _clip(self, boxes: np.ndarray) -> np.ndarray:
        height, width = self.input_size
        np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
        return boxes

    def _nms(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Indices kept by class-wise NMS, by decreasing score, at most ``max_detections``.

        OpenCV's C++ greedy NMS, called once per class present: greedy NMS compares each candidate with
        the boxes kept before it, so one call over all classes (torchvision's class-offset trick) would
        compare it with every class's kept boxes, and per class costs a fraction of that.
        """
        if len(scores) == 0:
            return np.zeros(0, dtype=np.int64)
        # Zero-area boxes (clipped away entirely) overlap nothing: torchvision keeps them all, whereas
        # OpenCV would call two of them identical. Keep them aside.
        wh = (boxes[:, 2:] - boxes[:, :2]).astype(np.float64)
        degenerate = (wh <= 0).any(axis=1)
        solid = np.flatnonzero(~degenerate)
        solid = solid[np.argsort(labels[solid], kind="stable")]
        rects = np.column_stack([boxes[solid, :2].astype(np.float64), wh[solid]])
        solid_scores = scores[solid].astype(np.float32)
        grouped = labels[solid]
        bounds = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1], True])
        kept = [np.flatnonzero(degenerate)]
        for start, end in zip(bounds[:-1], bounds[1:]):  # one OpenCV call per class
            # OpenCV's top_k caps the candidates, not the boxes kept: leave it off and cut afterwards.
            picked = cv2.dnn.NMSBoxes(rects[start:end], solid_scores[start:end],  # type: ignore[arg-type]
                                      0.0, self.iou_threshold)  # (stubs say Sequence; OpenCV wants ndarrays)
            kept.append(solid[start + np.asarray(picked, dtype=np.int64).reshape(-1)])
        keep = np.concatenate(kept)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return keep[: self.max_detections]

    def _to_image(self, boxes: np.ndarray, image_size: Tuple[int, int]) -> np.ndarray:
        ratio = (np.asarray(image_size, dtype=np.float32) / np.asarray(self.input_size, dtype=np.float32))
        return (boxes * np.array([ratio[1], ratio[0], ratio[1], ratio[0]], dtype=np.float32)).astype(np.float32)

    # -- the whole ------------------------------------------------------------------------------------

    def __call__(self, outputs: Mapping[str, np.ndarray], image_size: Tuple[int, int], index: int = 0) -> Detections:
        """Detections of image ``index`` of the batch.

        Args:
            outputs: the network outputs by name, each with a leading batch axis: ``bbox_regression``
                (B, N, 4) and ``cls_logits`` (B, N, C) for "raw" models; ``boxes`` (B, N, 4, normalised
                corners) and ``scores`` (B, N, C, probabilities) for "decoded" ones; the four
                "nms" outputs (``num_detections``, ``detection_boxes``, ``detection_scores``,
                ``detection_classes``) for models that run NMS themselves.
            image_size: (height, width) of the original image, to which boxes are scaled.
        """
        fmt = self.meta.output_format
        if fmt == "nms":
            return self._from_nms(outputs, image_size, index)
        if fmt == "raw":
            by_class = softmax_by_class(outputs["cls_logits"][index])
        else:
            by_class = np.ascontiguousarray(np.asarray(outputs["scores"][index], dtype=np.float32).T)
        # Best scores first: NMS keeps or drops a box by looking only at better boxes of its class, so
        # once ``max_detections`` boxes survive among the best W, no worse box can enter the result. Most
        # images settle in the first window; the window grows only when NMS removes many boxes.
        fg = by_class[1:]
        size = max(self.topk_candidates, 2 * self.max_detections)
        passing = int(np.count_nonzero(fg > self.score_threshold))
        if passing <= 4 * size:
            size = max(passing, 1)  # few enough for one round: no window to grow
        while True:
            anchor_idx, labels, cand_scores, complete = self._window(fg, size)
            boxes = self._boxes(outputs, index, anchor_idx)
            keep = self._nms(boxes, cand_scores, labels)
            if len(keep) >= self.max_detections or complete:
                break  # enough survivors, or the window already held every passing score
            size *= 4
        return Detections(self._to_image(boxes[keep], image_size), cand_scores[keep].astype(np.float32),
                          labels[keep].astype(np.int64), self.meta.class_names)

    def batch(self, outputs: Mapping[str, np.ndarray], image_sizes: Sequence[Tuple[int, int]]) -> List[Detections]:
        """Detections of each image of the batch: ``outputs`` as for ``__call__`` with B = len(image_sizes)
        images first (a padded fixed-batch model may return more; they are ignored), ``image_sizes`` their
        (height, width)."""
        return [self(outputs, size, index) for index, size in enumerate(image_sizes)]

    def _boxes(self, outputs: Mapping[str, np.ndarray], index: int, anchor_idx: np.ndarray) -> np.ndarray:
        """Decoded, clipped (M, 4) boxes in input pixels for the selected anchors."""
        if self.meta.output_format == "raw":
            return self._decode(np.asarray(outputs["bbox_regression"][index][anchor_idx], np.float32), anchor_idx)
        height, width = self.input_size
        corners = np.asarray(outputs["boxes"][index][anchor_idx], dtype=np.float32)
        return self._clip(corners * np.array([width, height, width, height], dtype=np.float32))

    def _from_nms(self, outputs: Mapping[str, np.ndarray], image_size: Tuple[int, int], index: int) -> Detections:
        count = int(np.asarray(outputs["num_detections"][index]).reshape(-1)[0])
        scores = np.asarray(outputs["detection_scores"][index][:count], dtype=np.float32)
        # Best first, ties in the order given: OpenVINO's MulticlassNms orders near-equal scores loosely.
        order = np.argsort(-scores, kind="stable")
        keep = order[scores[order] > self.score_threshold][: self.max_detections]
        boxes = self._clip(np.asarray(outputs["detection_boxes"][index][:count][keep], dtype=np.float32).copy())
        labels = np.asarray(outputs["detection_classes"][index][:count][keep]).astype(np.int64)
        return Detections(self._to_image(boxes, image_size), scores[keep], labels, self.meta.class_names)
