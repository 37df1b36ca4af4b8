"""The ONE post-processor: raw SSD outputs of any runtime -> :class:`Detections` in image pixels.

Same results as torchvision's ``SSD.postprocess_detections`` followed by its transform's box rescaling
(softmax, per-class score threshold and top-k candidates, box decoding, clipping, class-wise NMS, best
``max_detections``), computed differently so that it is fast in numpy:

* it works best-first: NMS decides each box from better boxes of its class only, so once
  ``max_detections`` boxes survive among the best W candidates (over all classes), nothing worse can
  enter the result; W starts at ``topk_candidates`` and grows only when NMS removes many boxes;
* candidates come from one ``argpartition`` over the flattened scores; only their boxes are decoded;
  when NMS removes most of them (near-uniform scores), torchvision's whole per-class top-k set is ranked
  once and NMS runs on its growing best-first prefix;
* class-wise NMS is OpenCV's C++ greedy NMS, one call per class present.

No Python loop runs over boxes; the only loop over classes is those NMS calls.

Models of other codebases keep their own order and rules, from the metadata: ``clip_boxes`` clips boxes
before NMS (torchvision's), after it or never (pytorch-ssd, ssd.pytorch), and a non-zero ``iou_epsilon``
(pytorch-ssd's IoU adds 1e-5 to every union) runs :func:`greedy_nms`, a numpy loop over the kept boxes.

Degenerate outputs (a broken or half-trained model, an FP16 overflow) give finite detections: an anchor whose
class scores hold NaN or infinity never passes the threshold, a candidate whose box regression decodes to
NaN is dropped (infinite offsets clip to the image edge), and outputs of the wrong shape are a
:class:`UserError` naming the tensor. Near-uniform scores (a randomly initialised SSD, where NMS removes most
candidates) go to that ranked set after one window, or at once when the scores tie.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from runtimes.box_coder import BoxCoder
from runtimes.detections import Detections
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata

# More per-anchor best scores than this many windows' worth at the window's floor means they tie there (a
# randomly initialised SSD's scores are all 1/C: 5.4 windows' worth for SSDLite320, 22 for SSD300); distinct
# scores put exactly one window's worth there (the floor is the window's size-th best).
TIE_FACTOR = 2


def softmax_by_class(logits: np.ndarray) -> np.ndarray:
    """Softmax of (N, C) logits over classes, returned class-major: (C, N) float32, max-subtracted as torch
    computes it. Class-major because numpy reduces across rows fast and along short rows slowly: the
    max and the sum over C = 21 classes cost a third of what they do on the (N, C) layout. An anchor whose
    logits hold NaN or +inf (or are all -inf) gets scores 0 rather than NaN."""
    return _softmax_class_major(np.asarray(logits, dtype=np.float32).T.copy())  # the one copy: class-major


def softmax_by_class_batch(logits: np.ndarray) -> np.ndarray:
    """:func:`softmax_by_class` of (B, N, C) logits in one pass: (B, C, N) float32, each image's slice
    bit-identical to ``softmax_by_class(logits[b])`` (the same reductions in the same order)."""
    return _softmax_class_major(np.asarray(logits, dtype=np.float32).transpose(0, 2, 1).copy())


def _softmax_class_major(shifted: np.ndarray) -> np.ndarray:
    """In place over the class axis (-2) of a (..., C, N) float32 array, which it returns."""
    top = shifted.max(axis=-2, keepdims=True)  # NaN when any logit of the anchor is NaN
    # Huge logits of both signs overflow to -inf in the subtraction (exp gives 0, as torch's does); the
    # unusable anchors' NaNs are replaced below.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        _exp_normalise(shifted, top)
    usable = np.isfinite(top)
    if not usable.all():
        np.copyto(shifted, np.float32(0.0), where=np.broadcast_to(~usable, shifted.shape))
    return shifted


def _exp_normalise(shifted: np.ndarray, top: np.ndarray) -> np.ndarray:
    shifted -= top
    np.exp(shifted, out=shifted)
    # One reciprocal per anchor and a multiply: cheaper than dividing every score, and within an ulp.
    shifted *= np.float32(1.0) / shifted.sum(axis=-2, keepdims=True)
    return shifted


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis of (N, C) logits: (N, C) float32 (a view of the class-major result)."""
    return softmax_by_class(logits).T


class SSDPostprocessor:
    """Turn one image's slice of the network outputs (or a whole batch's: :meth:`batch`) into detections.

    Thresholds default to the model's metadata (torchvision's defaults for the architecture) and can be
    overridden per instance: ``score_threshold`` (keep scores strictly above), ``iou_threshold`` (NMS
    suppresses IoU strictly above), ``topk_candidates`` (per class, before NMS), ``max_detections``.
    """

    def __init__(self, meta: ModelMetadata, *, score_threshold: Optional[float] = None,
                 iou_threshold: Optional[float] = None, topk_candidates: Optional[int] = None,
                 max_detections: Optional[int] = None) -> None:
        self.meta = meta
        try:
            self.score_threshold = float(meta.score_threshold if score_threshold is None else score_threshold)
            self.iou_threshold = float(meta.iou_threshold if iou_threshold is None else iou_threshold)
            self.topk_candidates = int(meta.topk_candidates if topk_candidates is None else topk_candidates)
            self.max_detections = int(meta.max_detections if max_detections is None else max_detections)
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. a list where the metadata needs a number
            raise UserError(f"thresholds that are not numbers ({exc}): pass numbers, or re-export the model "
                            "with export/export_onnx.py") from None
        self.input_size = (meta.input_height, meta.input_width)
        if self.topk_candidates < 1 or self.max_detections < 1:
            raise UserError(f"topk_candidates ({self.topk_candidates}) and max_detections ({self.max_detections}) "
                            "must be at least 1; pass other thresholds, or re-export the model with its defaults")
        if not (0.0 <= self.iou_threshold <= 1.0) or self.score_threshold != self.score_threshold:
            raise UserError(f"iou_threshold ({self.iou_threshold}) must lie in 0..1 and score_threshold "
                            f"({self.score_threshold}) must be a number")
        if meta.output_format == "nms":
            self._check_nms_overrides()
        if meta.output_format == "raw":
            self._coder = BoxCoder.for_model(meta)  # the anchors are validated with the metadata

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

    def _window(self, fg: np.ndarray, size: int,
                tie_limit: Optional[int] = None) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
        """(anchor index, label, score) of the ``size`` best scores over all classes that pass the threshold
        and rank within their class's ``topk_candidates``, and whether that window holds every passing
        score; None when more than ``tie_limit`` per-anchor best scores reach the window's floor (scores tie
        there, so the window would hold arbitrary ones). ``fg`` holds the foreground scores class-major: (C - 1, N)."""
        # The size-th best per-anchor maximum is a lower bound for the size-th best score overall (those
        # maxima are size distinct candidates), so scores below it can be skipped before partitioning.
        floor = self.score_threshold
        best = fg.max(axis=0)
        if len(best) > size:
            floor = max(floor, float(np.partition(best, len(best) - size)[len(best) - size]))
            if tie_limit is not None and np.count_nonzero(best >= floor) > tie_limit:
                return None  # (checked on the N maxima: a pass over all C x N scores costs as much as the window)
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
        """torchvision ``BoxCoder.decode_single`` for the selected anchors, clipped to the input when the
        model's codebase clips before NMS (infinite offsets end on the image's edge; NaN ones stay NaN, and
        unclipped infinite ones infinite, for the caller to drop)."""
        with np.errstate(invalid="ignore", over="ignore"):  # huge or infinite offsets: inf, then clipped
            return self._clip_before_nms(self._coder.decode(offsets, anchor_idx))

    def _clip_before_nms(self, boxes: np.ndarray) -> np.ndarray:
        return self._clip(boxes) if self.meta.clip_boxes == "before_nms" else boxes

    def _clip(self, boxes: np.ndarray) -> np.ndarray:
        height, width = self.input_size
        np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
        return boxes

    def _nms(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, int]:
        """Indices kept by class-wise NMS, by decreasing score, at most ``max_detections``, and how many
        boxes survived NMS before that cut.

        OpenCV's C++ greedy NMS, called once per class present: greedy NMS compares each candidate with
        the boxes kept before it, so one call over all classes (torchvision's class-offset trick) would
        compare it with every class's kept boxes, and per class costs a fraction of that.
        """
        if len(scores) == 0:
            return np.zeros(0, dtype=np.int64), 0
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
            kept.append(solid[start + self._class_nms(rects[start:end], solid_scores[start:end])])
        keep = np.concatenate(kept)
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return keep[: self.max_detections], len(keep)

    def _class_nms(self, rects: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Indices kept by greedy NMS of one class's (M, 4) float64 ``(x, y, w, h)`` boxes of positive size."""
        if self.meta.iou_epsilon:
            height, width = self.input_size
            return greedy_nms(rects, scores, self.iou_threshold, self.meta.iou_epsilon * height * width)
        picked = cv2.dnn.NMSBoxes(rects, scores, 0.0, self.iou_threshold)  # type: ignore[arg-type]
        return np.asarray(picked, dtype=np.int64).reshape(-1)  # (stubs say Sequence; OpenCV wants ndarrays)

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
        self._check_outputs(outputs, index + 1)
        if fmt == "nms":
            return self._from_nms(outputs, image_size, index)
        if fmt == "raw":
            by_class = softmax_by_class(outputs["cls_logits"][index])
        else:
            by_class = _probabilities_by_class(outputs["scores"][index])
        return self._detect(by_class, outputs, index, image_size)

    def batch(self, outputs: Mapping[str, np.ndarray], image_sizes: Sequence[Tuple[int, int]]) -> List[Detections]:
        """Detections of the first ``len(image_sizes)`` images of the batch (a fixed-batch model may return
        padding after them), the same as ``self(outputs, image_sizes[i], i)`` for each ``i``: one softmax
        over the whole batch, then candidate selection, decoding and NMS per image.

        Args:
            outputs: as for :meth:`__call__`, leading batch axis B >= ``len(image_sizes)``.
            image_sizes: (height, width) of each original image.
        """
        count = len(image_sizes)
        if count == 0:
            return []
        self._check_outputs(outputs, count)
        fmt = self.meta.output_format
        if fmt == "nms":
            return [self._from_nms(outputs, size, i) for i, size in enumerate(image_sizes)]
        if fmt == "raw":
            by_class = softmax_by_class_batch(np.asarray(outputs["cls_logits"])[:count])
        else:
            by_class = _probabilities_by_class(np.asarray(outputs["scores"])[:count])
        return [self._detect(by_class[i], outputs, i, size) for i, size in enumerate(image_sizes)]

    def _check_outputs(self, outputs: Mapping[str, np.ndarray], images: int) -> None:
        """UserError unless ``outputs`` holds the tensors this model's format needs, of the shapes its
        metadata implies, with at least ``images`` entries on the batch axis."""
        fmt = self.meta.output_format
        formats: Dict[str, Dict[str, Optional[int]]] = {
            "raw": {"bbox_regression": 4, "cls_logits": self.meta.num_classes},
            "decoded": {"boxes": 4, "scores": self.meta.num_classes}}
        expected = formats.get(fmt)
        if expected is None:  # nms: num_detections (B[, 1]), boxes (B, K, 4), scores and classes (B, K)
            expected = {"num_detections": None, "detection_boxes": 4, "detection_scores": None,
                        "detection_classes": None}
        anchors = len(self._coder.anchor_ctr) if fmt == "raw" else None
        for name, last in expected.items():
            if name not in outputs:
                raise UserError(f"the model has no output '{name}' (outputs: {', '.join(sorted(outputs))}); "
                                "it does not match its SSD metadata: re-export it with export/export_onnx.py")
            shape = np.shape(outputs[name])
            wrong = (len(shape) < 1 or shape[0] < images
                     or (last is not None and (len(shape) != 3 or shape[2] != last))
                     or (anchors is not None and len(shape) > 1 and shape[1] != anchors))
            if wrong:
                want = f"(B, {anchors or 'N'}, {last})" if last is not None else "a leading batch axis"
                raise UserError(f"the model's output '{name}' has shape {tuple(shape)}, expected {want} for "
                                f"{images} image(s) ({self.meta.arch}, {self.meta.num_classes} classes in its "
                                "metadata): re-export it with export/export_onnx.py")
        if fmt == "decoded":
            boxes, scores = np.shape(outputs["boxes"]), np.shape(outputs["scores"])
            if boxes[1] != scores[1]:
                raise UserError(f"the model's outputs 'boxes' {boxes} and 'scores' {scores} disagree on the "
                                "number of boxes: re-export it with export/export_onnx.py")

    def _detect(self, by_class: np.ndarray, outputs: Mapping[str, np.ndarray], index: int,
                image_size: Tuple[int, int]) -> Detections:
        """Detections of image ``index`` from its (C, N) class-major scores."""
        fg = by_class[1:]
        size = max(self.topk_candidates, 2 * self.max_detections)
        passing = int(np.count_nonzero(fg > self.score_threshold))
        if passing <= 4 * size:  # few enough for one round (a trained model's usual case)
            anchor_idx, labels, cand_scores, _ = self._window(fg, max(passing, 1))  # type: ignore[misc]
            return self._select(outputs, index, anchor_idx, labels, cand_scores, image_size)[0]
        # Best scores first: NMS keeps or drops a box by looking only at better boxes of its class, so once
        # ``max_detections`` boxes survive among the best W candidates, no worse box can enter the result.
        # Most images settle in the first window.
        window = self._window(fg, size, tie_limit=TIE_FACTOR * size)
        if window is not None:
            anchor_idx, labels, cand_scores, complete = window
            detections, kept = self._select(outputs, index, anchor_idx, labels, cand_scores, image_size)
            if kept >= self.max_detections or complete:
                return detections
            size = max(4 * size, 2 * size * self.max_detections // max(kept, 1))
        # NMS removed many boxes (near-uniform scores: a randomly initialised or broken model). Rank
        # torchvision's whole candidate set once, then run NMS on its best W, growing W from there.
        anchor_idx, labels, cand_scores = self._ranked_candidates(fg)
        while True:
            size = min(size, len(cand_scores))
            detections, kept = self._select(outputs, index, anchor_idx[:size], labels[:size], cand_scores[:size],
                                            image_size)
            if kept >= self.max_detections or size == len(cand_scores):
                return detections
            # Grow by what this round's survival rate says is needed (twice, as deeper candidates survive
            # less), at least fourfold.
            size = max(4 * size, 2 * size * self.max_detections // max(kept, 1))

    def _select(self, outputs: Mapping[str, np.ndarray], index: int, anchor_idx: np.ndarray, labels: np.ndarray,
                scores: np.ndarray, image_size: Tuple[int, int]) -> Tuple[Detections, int]:
        """Decode the candidates, drop non-finite boxes, NMS: the detections and how many survived NMS."""
        boxes = self._boxes(outputs, index, anchor_idx)
        if not np.isfinite(boxes.sum()):  # a NaN box regression, or an unclipped infinite one: no detection
            finite = np.isfinite(boxes).all(axis=1)
            boxes, labels, scores = boxes[finite], labels[finite], scores[finite]
        keep, survivors = self._nms(boxes, scores, labels)
        kept = self._clip(boxes[keep]) if self.meta.clip_boxes == "after_nms" else boxes[keep]
        return Detections(self._to_image(kept, image_size), scores[keep].astype(np.float32),
                          labels[keep].astype(np.int64), self.meta.class_names), survivors

    def _ranked_candidates(self, fg: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """torchvision's candidates exactly (per class, the ``topk_candidates`` best scores above the
        threshold) as (anchor index, label, score), best first over all classes. Equal scores are ordered by
        their rank in their class, then by class, so that the ranking of each class is a prefix-stable order
        (NMS on the best W decides those W as NMS on all would), and near-uniform scores (a randomly
        initialised model) spread the best W over the classes instead of filling it with the first class."""
        k, n = self.topk_candidates, fg.shape[1]
        if k < n:
            best = np.argpartition(fg, n - k, axis=1)[:, n - k:]  # (C - 1, k) anchors, unordered
        else:
            best = np.broadcast_to(np.arange(n), fg.shape)
        scores = np.take_along_axis(fg, best, axis=1)
        by_rank = np.argsort(-scores, axis=1, kind="stable")
        best, scores = np.take_along_axis(best, by_rank, axis=1), np.take_along_axis(scores, by_rank, axis=1)
        cls, rank = np.nonzero(scores > self.score_threshold)
        anchors, scores = best[cls, rank], scores[cls, rank]
        order = np.lexsort((cls, rank, -scores))
        return anchors[order], cls[order] + 1, scores[order]

    def _boxes(self, outputs: Mapping[str, np.ndarray], index: int, anchor_idx: np.ndarray) -> np.ndarray:
        """Decoded (M, 4) boxes in input pixels for the selected anchors, clipped if the model clips before NMS."""
        if self.meta.output_format == "raw":
            return self._decode(np.asarray(outputs["bbox_regression"][index][anchor_idx], np.float32), anchor_idx)
        height, width = self.input_size
        corners = np.asarray(outputs["boxes"][index][anchor_idx], dtype=np.float32)
        return self._clip_before_nms(corners * np.array([width, height, width, height], dtype=np.float32))

    def _from_nms(self, outputs: Mapping[str, np.ndarray], image_size: Tuple[int, int], index: int) -> Detections:
        available = len(outputs["detection_scores"][index])
        count = np.asarray(outputs["num_detections"][index], dtype=np.float64).reshape(-1)
        # A count outside 0..K (garbage from a broken engine) means what it can: none, or all K.
        count_n = int(np.clip(np.nan_to_num(count[0]), 0, available)) if count.size else 0
        scores = np.asarray(outputs["detection_scores"][index][:count_n], dtype=np.float32)
        labels = np.asarray(outputs["detection_classes"][index][:count_n], dtype=np.float64)
        boxes = np.asarray(outputs["detection_boxes"][index][:count_n], dtype=np.float32)
        # Non-finite scores, NaN boxes and labels that name no class are dropped (infinite corners are clipped).
        valid = (np.isfinite(scores) & ~np.isnan(boxes).any(axis=1) & (labels >= 1)
                 & (labels < self.meta.num_classes) & (labels == np.floor(labels)))
        # Best first, ties in the order given: OpenVINO's MulticlassNms orders near-equal scores loosely.
        order = np.argsort(-scores, kind="stable")
        order = order[valid[order]]
        keep = order[scores[order] > self.score_threshold][: self.max_detections]
        return Detections(self._to_image(self._clip(boxes[keep].copy()), image_size), scores[keep],
                          labels[keep].astype(np.int64), self.meta.class_names)


def _probabilities_by_class(scores: np.ndarray) -> np.ndarray:
    """(..., N, C) probabilities as (..., C, N) float32, with NaN and infinite scores set to 0."""
    by_class = np.ascontiguousarray(np.swapaxes(np.asarray(scores, dtype=np.float32), -1, -2))
    if not np.isfinite(by_class.max()):  # one reduction; NaN or +inf anywhere shows here
        by_class[~np.isfinite(by_class)] = 0.0
    return by_class


def greedy_nms(rects: np.ndarray, scores: np.ndarray, iou_threshold: float, epsilon: float) -> np.ndarray:
    """Indices kept by greedy NMS, best first: each box, best score first, suppresses the later boxes whose
    ``inter / (union + epsilon)`` exceeds ``iou_threshold`` (pytorch-ssd's ``hard_nms`` with its ``iou_of``).

    Args:
        rects: (M, 4) ``(x, y, w, h)`` boxes, w and h positive.
        scores: (M,) scores.
        epsilon: added to every union, in the boxes' squared units.
    """
    boxes = np.asarray(rects, dtype=np.float64)
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    areas = boxes[:, 2] * boxes[:, 3]
    order = np.argsort(-np.asarray(scores), kind="stable")
    kept = []
    while order.size:  # one pass per kept box, vectorised over the rest
        best, rest = order[0], order[1:]
        kept.append(best)
        size = np.clip(np.minimum(corners[rest, 2:], corners[best, 2:]) - np.maximum(corners[rest, :2],
                                                                                     corners[best, :2]), 0, None)
        inter = size[:, 0] * size[:, 1]
        order = rest[inter / (areas[rest] + areas[best] - inter + epsilon) <= iou_threshold]
    return np.asarray(kept, dtype=np.int64)
