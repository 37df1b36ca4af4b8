"""The VOC reader on the real voc-mini folder, and the image checks on broken files."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from calibration.images import UnreadableImage, read_image
from calibration.stream import CalibrationStream, select_images
from calibration.voc import VOCDataset
from runtimes.errors import UserError
from runtimes.metadata import ModelMetadata
from runtimes.preprocess import Preprocessor


def test_reads_voc_mini_test_split(voc_mini):
    data = VOCDataset(voc_mini, "2007", "test")
    assert len(data) == 21
    counts = data.class_counts()
    assert counts["person"] >= 1 and "bird" not in counts
    sample = next(s for s in data.samples if s.image_id == "000001")
    # 000001: a dog at 48,240,195,371 and a person at 8,12,352,498 (1-based inclusive in the XML).
    dog = next(o for o in sample.objects if o.name == "dog")
    assert dog.box == (47.0, 239.0, 195.0, 371.0)
    assert any(o.difficult for s in data.samples for o in s.objects)


def test_official_split_lists_missing_images_without_failing(voc_mini, tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    shutil.copytree(voc_mini / "VOCdevkit" / "VOC2007", root)
    shutil.copy(root / "ImageSets_official_full" / "Main" / "aeroplane_test.txt", root / "ImageSets/Main/full.txt")
    data = VOCDataset(tmp_path, "2007", "full")
    missing = data.skipped.reasons["listed in the split but have no image"]
    assert len(missing) + len(data) == 4952
    assert len(data) >= 20
    assert "have no image" in data.skipped.lines()[0] and "(+" in data.skipped.lines()[0]


def test_voc2012_and_unknown_split(voc_mini):
    with pytest.raises(UserError, match="no split 'nosuch'.*available: test, trainval"):
        VOCDataset(voc_mini, "2007", "nosuch")
    with pytest.raises(UserError, match="no VOCdevkit/VOC2010"):
        VOCDataset(voc_mini, "2010", "test")


def test_broken_xml_is_reported(voc_mini, tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    shutil.copytree(voc_mini / "VOCdevkit" / "VOC2007", root)
    (root / "Annotations" / "000001.xml").write_text("<annotation><object>")
    data = VOCDataset(tmp_path, "2007", "test")
    assert "000001" not in [s.image_id for s in data.samples]
    assert any("do not parse" in line for line in data.skipped.lines())


@pytest.fixture
def odd_images(voc_mini, tmp_path):
    src = next((voc_mini / "VOCdevkit/VOC2007/JPEGImages").glob("*.jpg"))
    good = cv2.imread(str(src))
    folder = tmp_path / "imgs"
    folder.mkdir()
    data = src.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    cv2.imwrite(str(folder / "gray.jpg"), cv2.cvtColor(good, cv2.COLOR_BGR2GRAY))
    ok, png = cv2.imencode(".png", good)
    (folder / "png_in_disguise.jpg").write_bytes(png.tobytes())
    shutil.copy(src, folder / "good.jpg")
    return folder


def test_image_checks(odd_images):
    for name, reason in [("truncated.jpg", "truncated"), ("empty.jpg", "empty"), ("text.jpg", "not an image")]:
        with pytest.raises(UnreadableImage, match=reason):
            read_image(odd_images / name)
    gray, note = read_image(odd_images / "gray.jpg")
    assert gray.shape[2] == 3 and "grayscale" in note
    disguised, note = read_image(odd_images / "png_in_disguise.jpg")
    assert disguised.shape[2] == 3 and "png named .jpg" in note
    assert read_image(odd_images / "good.jpg")[1] is None


def test_calibration_selection_skips_and_reports(odd_images):
    chosen = select_images(odd_images, count=10, seed=0)
    assert sorted(p.name for p in chosen.paths) == ["good.jpg", "gray.jpg", "png_in_disguise.jpg"]
    assert chosen.skipped.total == 3
    assert select_images(odd_images, 10, 0).content_sha256 == chosen.content_sha256
    assert select_images(odd_images, 10, 1).paths != chosen.paths or len(chosen.paths) < 2


def test_calibration_errors(tmp_path, odd_images):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images found"):
        select_images(tmp_path / "empty")
    for name in ("good.jpg", "gray.jpg", "png_in_disguise.jpg"):
        (odd_images / name).unlink()
    with pytest.raises(UserError, match="no usable calibration images.*truncated"):
        select_images(odd_images)
    with pytest.raises(UserError, match="no such calibration folder"):
        select_images(tmp_path / "nope")


def test_calibration_stream_uses_the_shared_preprocessing(voc_mini):
    meta = ModelMetadata("x", 300, 300, "RGB", [123.0, 117.0, 104.0], [1.0, 1.0, 1.0], ["bg", "a"],
                         output_format="decoded")
    chosen = select_images(voc_mini, count=5, seed=3, split="test")
    pre = Preprocessor(meta)
    batches = list(CalibrationStream(chosen, pre, batch_size=2))
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(batches[0][1], pre(read_image(chosen.paths[1])[0])[0])
    assert len(list(CalibrationStream(chosen, pre, batch_size=2, drop_last=True))) == 2
