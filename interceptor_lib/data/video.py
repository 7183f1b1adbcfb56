"""Reading frames and audio: videos through PyAV, face sequences from tar archives or folders.

Every source answers the same three questions — how many frames and what format (`info`), the
RGB frames at given indices (`read`), and the mono audio track (`audio`) — so the face-crop cache
treats a DFDC mp4 and a WildDeepfake tar sequence alike. Decoding errors become `MediaError` with a
reason code ('undecodable', 'empty') that the failures table records.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from interceptor_lib.data.sequences import frame_key, sequence_files
from interceptor_lib.errors import MediaError

SEQUENCE_FPS = 25.0  # frame sequences (WildDeepfake) carry no frame rate; used only to place audio


@dataclass
class MediaInfo:
    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    bitrate_kbps: float  # container bit rate; 0 for image sequences
    has_audio: bool
    codec: str


def sample_frame_indices(num_frames: int, n: int) -> np.ndarray:
    """`n` evenly spaced frame indices over the whole video (np.linspace, as DeepfakeBench and the
    FaceForensics++ benchmark do); fewer when the video is shorter than `n` frames."""
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, num_frames - 1, n).round().astype(np.int64))


def sample_clip_starts(num_frames: int, n_clips: int, clip_len: int) -> np.ndarray:
    """Start indices of `n_clips` clips of `clip_len` consecutive frames, evenly spaced; empty when
    the video is shorter than one clip."""
    if num_frames < clip_len or n_clips <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.linspace(0, num_frames - clip_len, n_clips).round().astype(np.int64))


class VideoSource:
    """A video file decoded with PyAV. Frames are numbered in decode order from 0."""

    precropped = False  # faces must be detected

    def __init__(self, path: str | Path, threads: bool = True):
        self.path = str(path)
        # threads=True: FFmpeg's frame/slice threads (less wall time for one video); False: one thread,
        # the least CPU per video, for callers that run one process per core (the cache's workers)
        self.threads = threads

    def _threading(self, stream) -> None:
        if self.threads:
            stream.thread_type = "AUTO"
        else:
            stream.codec_context.thread_count = 1

    def _open(self):
        try:
            return av.open(self.path)
        except FileNotFoundError:
            raise MediaError("undecodable", f"video {self.path} does not exist") from None
        except IsADirectoryError:
            raise MediaError("undecodable", f"{self.path} is a folder, not a video file") from None
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            why = getattr(e, "strerror", None) or str(e)
            raise MediaError("undecodable", f"{self.path} is not a video that can be read: it is not in a known "
                             f"container format, or it is truncated or damaged (FFmpeg: {why})") from None

    def info(self) -> MediaInfo:
        with self._open() as c:
            if not c.streams.video:
                raise MediaError("undecodable", f"no video stream in {self.path}")
            v = c.streams.video[0]
            fps = float(v.average_rate or v.guessed_rate or 25)
            duration = float(c.duration / av.time_base) if c.duration else 0.0
            n = int(v.frames or 0)
            if n <= 0 and duration > 0:
                n = int(round(duration * fps))
            if n <= 0:  # no frame count in the container: count packets (cheap, no decoding)
                n = sum(1 for p in c.demux(v) if p.size)
            if n <= 0:
                raise MediaError("empty", f"video {self.path} has no frames")
            return MediaInfo(num_frames=n, fps=fps, width=v.codec_context.width,
                             height=v.codec_context.height, duration_s=duration or n / fps,
                             bitrate_kbps=float(c.bit_rate or 0) / 1000, has_audio=bool(c.streams.audio),
                             codec=v.codec_context.name)

    def read_skipping(self, indices, lazy: bool = False) -> list:
        """`read`, without decoding the H.264 frames nothing refers to (non-reference B-frames, about
        half of a typical stream) unless they are asked for: the same frames for less CPU. `lazy`:
        yuv420p frames come as `YuvFrame`s, converted to RGB only where they are looked at. A frame's
        number is the rank of its presentation time among all packets (read first without decoding,
        which is cheap), as `read` counts them. Falls back to `read` for other codecs, for streams
        without times on every packet, or when the decoded frames do not match the packets."""
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return []
        try:
            with self._open() as c:
                stream = c.streams.video[0]
                extra = stream.codec_context.extradata or b""
                if stream.codec_context.name != "h264" or len(extra) < 5 or extra[0] != 1 or extra[4] & 3 != 3:
                    return self.read(indices)  # AVCC H.264 with 4-byte lengths: NAL headers say what is droppable
                pts = [p.pts for p in c.demux(stream) if p.size]
            if any(t is None for t in pts) or len(set(pts)) != len(pts):
                return self.read(indices)
            rank = {t: i for i, t in enumerate(sorted(pts))}
            want, out = set(wanted), {}
            with self._open() as c:
                stream = c.streams.video[0]
                self._threading(stream)
                ctx = stream.codec_context
                for packet in c.demux(stream):
                    if packet.size and rank[packet.pts] not in want and _droppable(bytes(packet)):
                        continue
                    for frame in ctx.decode(packet if packet.size else None):
                        i = rank.get(frame.pts)
                        if i is None:
                            return self.read(indices)
                        if i in want:
                            out[i] = YuvFrame.of(frame) if lazy else frame.to_ndarray(format="rgb24")
                    if len(out) == len(want):
                        break
        except av.FFmpegError:
            return self.read(indices)  # let the reference reader say what is wrong
        if len(out) < len(want):
            return self.read(indices)
        return [out[i] for i in wanted]

    def read(self, indices) -> list[np.ndarray]:
        """RGB uint8 frames (H, W, 3) at the sorted `indices`. Decodes sequentially up to the last
        index and converts only the frames asked for (colour conversion costs more than decoding).
        Raises MediaError if the stream ends early or breaks."""
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return []
        out: dict[int, np.ndarray] = {}
        last = wanted[-1]
        want = set(wanted)
        try:
            with self._open() as c:
                stream = c.streams.video[0]
                self._threading(stream)
                for i, frame in enumerate(c.decode(stream)):
                    if i in want:
                        out[i] = frame.to_ndarray(format="rgb24")
                    if i >= last:
                        break
        except av.FFmpegError as e:
            why = getattr(e, "strerror", None) or str(e)
            raise MediaError("undecodable", f"{self.path} breaks off: decoding failed after {len(out)} of the "
                             f"frames asked for; the file is truncated or damaged (FFmpeg: {why})") from None
        if len(out) < len(wanted):
            if not out:
                raise MediaError("undecodable", f"no frame could be decoded from {self.path}")
            # Frame counts in headers can overshoot by a few frames: reuse the last decoded frame.
            missing = [i for i in wanted if i not in out]
            if len(missing) > max(2, len(wanted) // 10):
                raise MediaError("undecodable", f"{self.path} ended after {max(out) + 1} frames; "
                                 f"{len(missing)} of {len(wanted)} requested frames are missing")
            for i in missing:
                out[i] = out[max(k for k in out if k <= i)] if any(k <= i for k in out) else out[min(out)]
        return [out[i] for i in wanted]

    def audio(self, sample_rate: int = 16000) -> np.ndarray | None:
        """The first audio track as float32 mono at `sample_rate` (None when there is none)."""
        try:
            with self._open() as c:
                if not c.streams.audio:
                    return None
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                chunks = []
                for frame in c.decode(c.streams.audio[0]):
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray().reshape(-1))
                for out in resampler.resample(None):
                    chunks.append(out.to_ndarray().reshape(-1))
        except av.FFmpegError as e:
            raise MediaError("no_audio", f"audio of {self.path} cannot be decoded: {e}") from e
        return np.concatenate(chunks).astype(np.float32) if chunks else None


class YuvFrame:
    """A decoded yuv420p frame that becomes RGB only where it is looked at: `frame[y0:y1, x0:x1]` converts
    that region, `np.asarray(frame)` the whole frame, and both are bit-identical to the whole frame's
    `to_ndarray(format="rgb24")` (FFmpeg's unscaled YUV->RGB conversion works on each 2x2 block with
    its own chroma, so a region aligned to even pixels converts alone to the same values). The
    preprocessing looks at a face region of most frames and at the whole of a few: this saves most of
    the colour conversion, which costs more than decoding the frame."""

    ndim, dtype = 3, np.dtype(np.uint8)

    def __init__(self, yuv: np.ndarray, height: int, width: int, color_range, colorspace):
        self._yuv, self._h, self._w = yuv, height, width
        self._range, self._space = color_range, colorspace
        self._rgb = None

    @classmethod
    def of(cls, frame: "av.VideoFrame"):
        """A YuvFrame of a yuv420p frame with even sides; else the frame as an RGB array."""
        if frame.format.name != "yuv420p" or frame.width % 2 or frame.height % 2:
            return frame.to_ndarray(format="rgb24")
        return cls(frame.to_ndarray(), frame.height, frame.width, frame.color_range, frame.colorspace)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self._h, self._w, 3)

    def __len__(self) -> int:
        return self._h

    def __array__(self, dtype=None, copy=None):
        if self._rgb is None:
            self._rgb = self._convert(0, 0, self._w, self._h)
        return self._rgb if dtype is None else self._rgb.astype(dtype)

    def __getitem__(self, key):
        if self._rgb is None and isinstance(key, tuple) and len(key) == 2 \
                and all(isinstance(k, slice) and k.step in (None, 1) for k in key):
            y0, y1, _ = key[0].indices(self._h)
            x0, x1, _ = key[1].indices(self._w)
            if y1 > y0 and x1 > x0:
                ex0, ey0, ex1, ey1 = x0 // 2 * 2, y0 // 2 * 2, min(self._w, (x1 + 1) // 2 * 2), min(self._h, (y1 + 1) // 2 * 2)
                return self._convert(ex0, ey0, ex1, ey1)[y0 - ey0:y1 - ey0, x0 - ex0:x1 - ex0]
        return np.asarray(self)[key]

    def luma_mean(self, step: int = 4) -> float:
        """Mean grey level (0-255) of every `step`-th pixel each way, from the luma plane (limited range)."""
        y = self._yuv[:self._h:step, ::step].astype(np.float32)
        return float(np.clip((y - 16) * (255 / 219), 0, 255).mean())

    def _convert(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        h, w = self._h, self._w
        planes = (self._yuv[:h, x0:x1][y0:y1],
                  self._yuv[h:h + h // 4].reshape(h // 2, w // 2)[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                  self._yuv[h + h // 4:].reshape(h // 2, w // 2)[y0 // 2:y1 // 2, x0 // 2:x1 // 2])
        packed = np.concatenate([p.reshape(-1) for p in planes]).reshape((y1 - y0) * 3 // 2, x1 - x0)
        frame = av.VideoFrame.from_ndarray(packed, format="yuv420p")
        frame.color_range, frame.colorspace = self._range, self._space
        return frame.to_ndarray(format="rgb24")


def frame_luma_mean(frame, step: int = 4) -> float:
    """Mean grey level (ITU-R BT.601 luma, 0-255) of every `step`-th pixel each way of an RGB array or
    a YuvFrame (from its luma plane, without converting it)."""
    if isinstance(frame, YuvFrame):
        return frame.luma_mean(step)
    return float(frame[::step, ::step].reshape(-1, 3).mean(0) @ np.array([0.299, 0.587, 0.114]))


def _droppable(avcc: bytes) -> bool:
    """Whether an H.264 access unit in AVCC form (4-byte lengths) is a picture no other frame refers to:
    every slice NAL (types 1 and 5) has nal_ref_idc 0 (ITU-T H.264, 7.4.1). Unparseable: not droppable."""
    pos, slices = 0, 0
    while pos + 5 <= len(avcc):
        n = int.from_bytes(avcc[pos:pos + 4], "big")
        if n <= 0 or pos + 4 + n > len(avcc):
            return False
        header = avcc[pos + 4]
        if header & 0x1F in (1, 5):
            if header & 0x60:
                return False
            slices += 1
        pos += 4 + n
    return slices > 0 and pos == len(avcc)


class ImageSequenceSource:
    """Face frames stored as image files: members of a tar archive with a common prefix (official
    WildDeepfake: `./<N>/fake/<seq>/<frame>.png`) or files in a folder (Kaggle mirror; `member` is
    a sub-folder `seq/` or a key like `seq_*`, see `data.sequences`). Frames
    are ordered by the number in their name."""

    precropped = True  # WildDeepfake ships 224x224 face crops: no detection

    def __init__(self, path: str | Path, member: str, frames: dict[str, bytes] | None = None):
        self.path, self.member = str(path), member
        self._frames = frames  # name -> encoded bytes, when the caller already read the archive

    def _load(self) -> dict[str, bytes]:
        if self._frames is None:
            if Path(self.path).is_file():  # a tar archive; a folder otherwise
                self._frames = read_tar_sequences(self.path, [self.member])[self.member]
            else:
                self._frames = _read_folder_sequence(Path(self.path), self.member)
        if not self._frames:
            raise MediaError("empty", f"no frames for sequence {self.member!r} in {self.path}")
        return self._frames

    def _names(self) -> list[str]:
        return sorted(self._load(), key=frame_key)

    def info(self) -> MediaInfo:
        names = self._names()
        first = _decode_image(self._frames[names[0]], f"{self.path}::{names[0]}")
        return MediaInfo(num_frames=len(names), fps=SEQUENCE_FPS, width=first.shape[1], height=first.shape[0],
                         duration_s=len(names) / SEQUENCE_FPS, bitrate_kbps=0.0, has_audio=False, codec="image")

    def read(self, indices) -> list[np.ndarray]:
        names = self._names()
        return [_decode_image(self._frames[names[i]], f"{self.path}::{names[i]}") for i in sorted(set(indices))]

    def audio(self, sample_rate: int = 16000) -> None:
        return None


def read_tar_sequences(path: str | Path, prefixes: list[str]) -> dict[str, dict[str, bytes]]:
    """Read the image members under each prefix of a tar(.gz) in ONE pass (a gzip stream cannot
    seek, so reading sequence by sequence would decompress the archive once per sequence)."""
    result: dict[str, dict[str, bytes]] = {p: {} for p in prefixes}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                for p in prefixes:
                    if m.name.startswith(p):
                        f = tar.extractfile(m)
                        result[p][m.name] = f.read() if f else b""
                        break
    except (tarfile.TarError, OSError, EOFError) as e:
        raise MediaError("undecodable", f"cannot read tar archive {path}: {e}") from e
    return result


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def open_source(path: str, member: str = "", frames: dict[str, bytes] | None = None, threads: bool = True):
    """The frame source of a table row: an image sequence when `member` is set (or the row is one
    image), else a video (`threads`: see VideoSource). Image sources hold already-cropped faces
    (`precropped`)."""
    if member:
        return ImageSequenceSource(path, member, frames)
    if str(path).lower().endswith(IMAGE_SUFFIXES):
        p = Path(path)
        return ImageSequenceSource(p.parent, p.name, {p.name: p.read_bytes()} if p.is_file() else {})
    return VideoSource(path, threads)


def _read_folder_sequence(folder: Path, member: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sequence_files(folder, member)}


def _decode_image(data: bytes, where: str) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise MediaError("undecodable", f"cannot decode image {where}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_video(path, frames, fps: float = 25, crf: int = 23, audio: np.ndarray | None = None,
                sample_rate: int = 44100, preset: str = "veryfast", x264_params: str = "") -> Path:
    """Encode RGB uint8 frames (H, W, 3) as an H.264 (yuv420p) mp4; with `audio` (mono float32 in
    [-1, 1]) add an AAC track. x264 runs single-threaded; `x264_params` adds x264 options ("key=value:
    ..."). With x264's macroblock-tree rate control (on by default) the bytes of some frame sizes (224 x
    224 among them) also depend on what the process decoded before; with "no-mbtree=1" they depend on
    the input alone (and the library versions). The demo corpus is encoded in worker processes that
    decode nothing in between, and is reproducible from its seed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(int(crf)), "preset": preset} | ({"x264-params": x264_params}
                                                                            if x264_params else {})
                stream.codec_context.thread_count = 1
                astream = container.add_stream("aac", rate=sample_rate) if audio is not None else None
                if astream is not None:
                    astream.layout, astream.format = "mono", "fltp"
            # OpenCV's BT.601 limited-range I420 conversion: what swscale would do, several times faster
            yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
            for packet in stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"no frames to write to {path}")
        for packet in stream.encode():
            container.mux(packet)
        if astream is not None:
            samples = np.clip(np.asarray(audio, np.float32), -1, 1)
            for start in range(0, len(samples), 1024):  # 1024 = the AAC frame size
                af = av.AudioFrame.from_ndarray(samples[start:start + 1024].reshape(1, -1), format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = sample_rate, start, Fraction(1, sample_rate)
                for packet in astream.encode(af):
                    container.mux(packet)
            for packet in astream.encode():
                container.mux(packet)
    return path
