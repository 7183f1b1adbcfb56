"""Models: an EfficientNet-B4 backbone with staged freezing, the six specialists, the reference design's other
detectors and Xception, all built by name:

    from interceptor_lib.models import create_model, list_models, param_groups
    model = create_model("ll", backbone="test_efficientnet", pretrained=False)
    out = model({"image": x})  # out["logits"] (B, 2), out["prob"] (B,) = P(fake), out["features"], ...

The batch / prediction contract and the trunk split are described in `base.py`; weights and units
of the backbone in `backbone.py`; freezing and optimizer groups in `freezing.py`; parameter
counts in `size_report.py` (`python -m interceptor_lib.models.size_report`).
"""

from interceptor_lib.models import specialists  # noqa: F401  (registers ll, bg, av, cm, rr, tm)
from interceptor_lib.models import baselines, dual_stream  # noqa: F401  (registers effnet_b4, dual_stream_v3, xception)
from interceptor_lib.models.backbone import (Backbone, PretrainedWeightsMismatch, PretrainedWeightsMissing,
                                             UnsupportedBackbone, create_backbone, resolve_pretrained_file)
from interceptor_lib.models.base import BatchError, DetectorBase, two_class_logits
from interceptor_lib.models.explain import attention_map, grad_cam
from interceptor_lib.models.freezing import (ProgressiveUnfreezing, keep_frozen_in_eval, param_groups,
                                             set_trainable_stages, trainable_stages)
from interceptor_lib.models.registry import (ModelConfigError, ModelEntry, UnknownModelError, create_model,
                                             list_models, model_entry, register_model)

__all__ = [
    "create_model", "list_models", "model_entry", "register_model", "ModelEntry",
    "Backbone", "create_backbone", "resolve_pretrained_file", "DetectorBase", "two_class_logits",
    "param_groups", "set_trainable_stages", "trainable_stages", "keep_frozen_in_eval", "ProgressiveUnfreezing",
    "grad_cam", "attention_map",
    "UnknownModelError", "ModelConfigError", "PretrainedWeightsMissing", "PretrainedWeightsMismatch",
    "UnsupportedBackbone", "BatchError",
]
