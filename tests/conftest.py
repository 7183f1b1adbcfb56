import os
import sys
from pathlib import Path

# Notebooks under nbval run on the smoke profile (their parameters cell reads this variable).
os.environ.setdefault("INTERCEPTOR_PROFILE", "smoke")
# Test helpers (tests/media.py) are imported as a plain module from this folder.
sys.path.insert(0, str(Path(__file__).parent))
