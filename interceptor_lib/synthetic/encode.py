"""Deterministic file writers for the demo corpus: the WildDeepfake-style `.tar.gz` of PNG frames
(mp4 files are written by `interceptor_lib.data.video.write_video`, single-threaded).

Determinism: x264 runs single-threaded (its frame threads would also be deterministic, but one
thread per file is the right use of a process pool anyway), the mp4 muxer writes no wall-clock
time unless asked, PNG encoding is deterministic, and the tar/gzip headers get fixed times,
owners and modes. The same frames therefore always give the same bytes on the same library
versions.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import cv2
import numpy as np

X264_PRESET = "superfast"  # speed over size: the demo corpus must build in well under a minute


def png_bytes(frame: np.ndarray) -> bytes:
    """Lossless PNG of an RGB uint8 frame."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("OpenCV failed to encode a PNG frame")
    return buf.tobytes()


class DeterministicTarGz:
    """A `.tar.gz` whose bytes depend only on the members added (fixed mtime/owner/mode, gzip
    header without file name or time). Directories are added once, before their first file,
    as `tar czf` of a folder would."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.GNU_FORMAT)
        self._dirs: set[str] = set()

    def add_file(self, name: str, data: bytes) -> None:
        parts = name.split("/")
        for i in range(1, len(parts)):
            self._add_dir("/".join(parts[:i]))
        info = self._info(name, tarfile.REGTYPE, 0o644)
        info.size = len(data)
        self._tar.addfile(info, io.BytesIO(data))

    def _add_dir(self, name: str) -> None:
        if name in self._dirs or name in ("", "."):
            return
        self._dirs.add(name)
        self._tar.addfile(self._info(name, tarfile.DIRTYPE, 0o755))

    @staticmethod
    def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def close(self) -> None:
        self._tar.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                           compresslevel=6) as gz:
            gz.write(self._buf.getvalue())
