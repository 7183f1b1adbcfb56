import numpy as np
import pytest
from skimage import data as skdata

from interceptor_lib.data.faces import (CropSpec, HaarFaceDetector, create_face_detector, crop_face,
                                        fill_missing_boxes, square_box)


def iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / (area(a) + area(b) - inter)


def test_haar_finds_the_astronauts_face():
    img = skdata.astronaut()  # a real photograph, 512x512; her face spans about x 175-275, y 65-165
    dets = HaarFaceDetector().detect(img)
    assert dets, "no face found in a real photograph"
    assert iou(dets[0][0], (175, 65, 275, 165)) > 0.6


def test_haar_downscales_large_frames_and_maps_boxes_back():
    img = np.kron(skdata.astronaut(), np.ones((3, 3, 1), np.uint8))  # 1536x1536
    box = HaarFaceDetector(max_side=512).detect(img)[0][0]
    assert iou(box / 3, (175, 65, 275, 165)) > 0.6


def test_no_face_in_a_plain_image():
    img = np.full((240, 320, 3), 128, np.uint8)
    assert HaarFaceDetector().detect(img) == []


def test_crop_margin_and_padding():
    img = np.zeros((100, 100, 3), np.uint8)
    img[40:60, 40:60] = 255
    crop = crop_face(img, np.array([40, 40, 60, 60], np.float32), CropSpec(size=30, margin=1.5))
    assert crop.shape == (30, 30, 3)
    # the 20 px box with margin 1.5 is 30 px: the white square fills the central 2/3
    assert crop[15, 15].min() == 255 and crop[1, 1].max() == 0
    # a box at the corner is zero-padded, not shifted: the face stays centred
    edge = crop_face(img, np.array([0, 0, 20, 20], np.float32), CropSpec(size=40, margin=2.0))
    assert edge.shape == (40, 40, 3) and edge[:10, :10].max() == 0
    assert tuple(square_box(np.array([0, 0, 20, 10]), 1.0, img.shape)) == (0, -5, 20, 15)


def test_fill_missing_boxes_uses_nearest_detection():
    a, b = np.array([0, 0, 10, 10], np.float32), np.array([5, 5, 15, 15], np.float32)
    boxes, found = fill_missing_boxes([None, a, None, None, b])
    assert found.tolist() == [False, True, False, False, True]
    assert (boxes[0] == a).all() and (boxes[2] == a).all() and (boxes[3] == b).all()
    with pytest.raises(ValueError):
        fill_missing_boxes([None, None])


def test_yunet_without_model_file_says_what_to_provide(tmp_path):
    with pytest.raises(FileNotFoundError, match="YuNet model file"):
        create_face_detector("yunet", str(tmp_path / "missing.onnx"))
    with pytest.raises(ValueError, match="unknown face detector"):
        create_face_detector("mtcnn")
