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
        create_face_detector("retinaface")


@pytest.mark.parametrize("name,module", [("mtcnn", "facenet_pytorch"), ("mediapipe", "mediapipe")])
def test_optional_detector_refuses_clearly_or_finds_the_astronauts_face(name, module, monkeypatch):
    """Where the package is installed the detector finds the face in a real photograph, near a
    previous box and at its size too; where it is not, building it (and params naming it) says which
    package to install and how, instead of an ImportError from deep inside."""
    import importlib.util

    from interceptor_lib.params import load_params
    from interceptor_lib.errors import ParamsError

    if importlib.util.find_spec(module) is None:
        with pytest.raises(ImportError, match=f"pip install .*{module.split('_')[0]}"):
            create_face_detector(name)
        with pytest.raises(ParamsError, match=f"preprocess.detector.*pip install"):
            load_params("smoke", overrides={"preprocess.detector": name}, check_paths=False)
        return
    img = skdata.astronaut()
    det = create_face_detector(name)
    box = det.detect(img)[0][0]
    assert iou(box, (175, 65, 275, 165)) > 0.5
    big = np.kron(img, np.ones((3, 3, 1), np.uint8))
    assert iou(det.detect_near(big, box * 3)[0][0] / 3, box) > 0.6
    assert iou(det.detect_sized(big, box * 3)[0][0] / 3, box) > 0.6


def test_tracking_follows_one_person_when_another_face_grows_larger():
    """Two faces; B outgrows A half-way. The largest face per frame jumps to B; the tracked face stays A."""
    from media import two_face_frames

    from interceptor_lib.data.faces import track_faces

    frames, a, b = two_face_frames(16)
    det = HaarFaceDetector()
    largest = [det.detect(f)[0][0] for f in frames]
    assert iou(largest[-1], b[-1]) > 0.5  # the reference rule switches person: the test can tell
    for every in (1, 4):  # full-frame search of every frame, and nearby search in between
        tracked = track_faces(det, frames, [True] * len(frames), full_every=every)
        assert all(box is not None and iou(box, box_a) > 0.6 for box, box_a in zip(tracked, a)), every


def test_nearby_search_finds_the_box_the_full_search_finds_with_fewer_full_searches():
    from media import face_frames

    from interceptor_lib.data.faces import track_faces

    class Counting(HaarFaceDetector):
        full = near = 0

        def detect(self, frame):
            Counting.full += 1
            return super().detect(frame)

        def detect_near(self, frame, prev):
            Counting.near += 1
            return super().detect_near(frame, prev)

    frames = face_frames(24)
    det = Counting()
    probe = [i % 2 == 0 for i in range(24)]
    full = track_faces(det, frames, probe, full_every=1)
    calls_full = Counting.full
    Counting.full = Counting.near = 0
    tracked = track_faces(det, frames, probe, full_every=6)
    assert Counting.full < calls_full / 3 and Counting.near > 0
    assert all((x is None) == (not p) for x, p in zip(tracked, probe))
    assert all(iou(x, y) > 0.8 for x, y in zip(tracked, full) if x is not None)


def test_nearest_in_time_maps_frames_across_frame_counts_and_rates():
    from interceptor_lib.data.extract import nearest_in_time

    source = np.array([0, 10, 20, 30])                # a 25 fps original's stored frames
    assert nearest_in_time(np.array([0, 10, 20, 30]), 25.0, source, 25.0).tolist() == [0, 1, 2, 3]
    assert nearest_in_time(np.array([0, 12, 24, 36]), 30.0, source, 25.0).tolist() == [0, 1, 2, 3]  # same times
    assert nearest_in_time(np.array([4, 6, 99]), 25.0, source, 25.0).tolist() == [0, 1, 3]


def test_reading_without_unreferenced_frames_gives_the_same_frames(tmp_path):
    """read_skipping leaves out the H.264 frames nothing refers to unless asked for them: the frames it
    returns are those of the reference reader, and it did skip some (x264's B-frames)."""
    import av
    from media import face_frames, write_video

    from interceptor_lib.data.video import VideoSource, _droppable

    path = write_video(tmp_path / "v.mp4", [np.roll(f, 2 * i, axis=1) for i, f in enumerate(face_frames(60))])
    with av.open(str(path)) as c:
        dropped = sum(_droppable(bytes(p)) for p in c.demux(c.streams.video[0]) if p.size)
    assert dropped > 10
    src = VideoSource(path)
    for idx in ([0, 7, 8, 9, 10, 33, 59], [5], list(range(20, 28))):
        ref, fast = src.read(idx), src.read_skipping(idx)
        assert len(ref) == len(fast) == len(idx) and all(np.array_equal(a, b) for a, b in zip(ref, fast))


def test_lazily_converted_frames_give_the_same_pixels_crops_and_boxes(tmp_path):
    """YuvFrame converts only the regions looked at; every region, crop (also one leaving the frame),
    tracked box and the whole frame equal those of the RGB frames of the reference reader."""
    from media import face_frames, write_video

    from interceptor_lib.data.faces import CropSpec, HaarFaceDetector, crop_face, track_faces
    from interceptor_lib.data.video import VideoSource, YuvFrame, frame_luma_mean

    path = write_video(tmp_path / "v.mp4", [np.roll(f, 3 * i, axis=1) for i, f in enumerate(face_frames(24))])
    src = VideoSource(path, threads=False)
    idx = [0, 5, 6, 7, 13, 23]
    ref, lazy = src.read(idx), src.read_skipping(idx, lazy=True)
    assert all(isinstance(f, YuvFrame) for f in lazy)
    h, w = ref[0].shape[:2]
    for r, f in zip(ref, lazy):
        assert f.shape == r.shape
        for ys, xs in ((slice(3, 41), slice(7, 58)), (slice(0, h), slice(0, w)), (slice(h - 5, None), slice(None, 3))):
            assert np.array_equal(f[ys, xs], r[ys, xs])
        assert np.array_equal(f[::4, ::4], r[::4, ::4])
        assert abs(frame_luma_mean(f) - frame_luma_mean(r)) < 1.5  # luma plane vs. converted RGB
    spec = CropSpec(64, 1.3)
    for box in ([10, 12, 50, 60], [-20, -10, 30, 40], [w - 30, h - 25, w + 10, h + 12]):
        box = np.array(box, np.float32)
        assert all(np.array_equal(crop_face(r, box, spec), crop_face(f, box, spec)) for r, f in zip(ref, lazy))
    det = HaarFaceDetector()
    a, b = track_faces(det, ref, [True] * len(ref), 3), track_faces(det, lazy, [True] * len(lazy), 3)
    assert any(x is not None for x in a)
    assert all((x is None and y is None) or np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(np.asarray(f), r) for r, f in zip(ref, lazy))
