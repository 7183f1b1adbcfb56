"""Interceptor: deepfake video detection with six specialist detectors and a weighted ensemble.

The package holds everything the notebooks call: dataset indexers and the synthetic demo corpus
(`interceptor_lib.data`), face-crop preprocessing and training datasets, and the command line
(`python -m interceptor_lib --help`). Importing it has no side effects (no seeding, no downloads).
"""

from pathlib import Path

__version__ = "0.1.0"

#: The repository checkout this (editable) install lives in; notebooks resolve params/ and outputs/
#: from here so that they run the same from any working directory.
REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["__version__", "REPO_ROOT"]
