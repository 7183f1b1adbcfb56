"""pytest runs the unit tests (tests/) and the notebooks (notebooks/, with nbval) on the smoke profile:
the notebooks' parameters cell leaves `profile = None`, which reads this variable."""

import os

os.environ.setdefault("INTERCEPTOR_PROFILE", "smoke")
