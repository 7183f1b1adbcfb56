"""The six specialists (the reference design), each a module looking at one family of artifacts, on the shared
SpecialistDetector (backbone + attention fusion + MLP head). Importing this package registers
`ll`, `bg`, `av`, `cm`, `rr`, `tm`."""

from interceptor_lib.models.specialists import low_light, background, audio_visual, compression, resolution, temporal  # noqa: F401  (registers)
from interceptor_lib.models.specialists.audio_visual import AudioVisualConfig, AudioVisualModule
from interceptor_lib.models.specialists.background import BackgroundModule
from interceptor_lib.models.specialists.compression import BlockDCT, CompressionModule
from interceptor_lib.models.specialists.detector import SpecialistConfig, SpecialistDetector
from interceptor_lib.models.specialists.log_mel import LogMel, mel_filterbank
from interceptor_lib.models.specialists.low_light import LowLightModule
from interceptor_lib.models.specialists.resolution import ResolutionModule
from interceptor_lib.models.specialists.temporal import TemporalModule

__all__ = ["SpecialistConfig", "SpecialistDetector", "AudioVisualConfig", "LowLightModule", "BackgroundModule",
           "AudioVisualModule", "CompressionModule", "ResolutionModule", "TemporalModule", "BlockDCT", "LogMel",
           "mel_filterbank"]
