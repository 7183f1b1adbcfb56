"""Progress bars that suit where they are shown.

- In Jupyter (JupyterLab, Colab, Kaggle), a widget bar that updates in place (tqdm.notebook).
- In an unattended run (`./run_all.sh` sets INTERCEPTOR_PROGRESS=log: papermill copies every update a
  notebook prints into its log), a text bar that writes at most once a minute, and once at the end,
  so a log holds a few lines per loop instead of hundreds.
- In a terminal, tqdm's usual bar on one updating line.

INTERCEPTOR_PROGRESS may also be set by hand: `widget`, `log`, `text`, or `off`.
"""

from __future__ import annotations

import importlib.util
import os

from tqdm import tqdm

LOG_INTERVAL_S = 60.0


def _mode() -> str:
    mode = os.environ.get("INTERCEPTOR_PROGRESS", "").strip().lower()
    if mode in ("widget", "log", "text", "off"):
        return mode
    try:
        from IPython import get_ipython  # optional: present only where Jupyter is installed

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        if importlib.util.find_spec("ipywidgets") is not None:
            return "widget"
        return "log"  # a kernel without ipywidgets: text, sparingly
    return "text"


def progress_bar(iterable=None, **kwargs):
    """A tqdm bar (same arguments as tqdm) in the form that suits the display (see the module's doc)."""
    mode = _mode()
    if mode == "off":
        kwargs["disable"] = True
    if mode == "widget":
        from tqdm.notebook import tqdm as bar  # needs ipywidgets: imported only inside a Jupyter kernel
    else:
        bar = tqdm
        if mode == "log":
            kwargs.setdefault("mininterval", LOG_INTERVAL_S)
            kwargs.setdefault("maxinterval", LOG_INTERVAL_S * 10)
            kwargs.setdefault("ascii", True)
    return bar(iterable, **kwargs)
