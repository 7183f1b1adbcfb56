"""Starting the chain's notebooks: the order ./run_all.sh starts each stage's models in."""

from __future__ import annotations

from interceptor_lib.errors import InterceptorError
from interceptor_lib.models import model_entry


def start_order(models: list[str], parallel: int = 1) -> list[str]:
    """The order in which ./run_all.sh starts the models' notebooks of a stage. With `parallel` > 1
    (several notebooks at once on a CPU) the clip models start first: they read T frames per item and
    take the longest, and started last one of them ran alone on one core for minutes at the end of
    each stage (longest first). Sequentially, `models` as given. Each stage's result does not depend on
    the order (every model draws its randomness from params.seed)."""
    models = list(models)
    if parallel <= 1:
        return models
    def is_clip(name: str) -> bool:
        try:
            return model_entry(name).input_kind == "clip"
        except InterceptorError:  # not a registered model: keeps its place
            return False

    return [m for m in models if is_clip(m)] + [m for m in models if not is_clip(m)]
