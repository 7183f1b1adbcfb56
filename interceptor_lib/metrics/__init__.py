"""Evaluation: frame- and video-level detection metrics grouped by an explicit video id, thresholds
chosen on validation, bootstrap intervals, per-method tables, and calibration.

    from interceptor_lib.metrics import evaluate, per_group_metrics
    results = evaluate(test_frames, val_frames)   # rows: level x threshold_name ("0.5", "val")

Labels are 1 = fake, 0 = real; scores are P(fake). Every function leaves its inputs unchanged.
"""

from interceptor_lib.metrics.calibration import apply_temperature, ece, fit_temperature, reliability
from interceptor_lib.metrics.scores import (aggregate_videos, binary_metrics, bootstrap_auc_ci,
                                                check_binary, choose_threshold, eer, evaluate,
                                                per_group_metrics)

__all__ = ["aggregate_videos", "apply_temperature", "binary_metrics", "bootstrap_auc_ci", "check_binary",
           "choose_threshold", "ece", "eer", "evaluate", "fit_temperature", "per_group_metrics",
           "reliability"]
