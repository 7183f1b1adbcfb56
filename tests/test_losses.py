import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from interceptor_lib.data.datasets import BalancedSampler
from interceptor_lib.training.losses import FocalLoss, build_loss, class_weights


def test_focal_loss_matches_its_formula():
    logits = torch.tensor([[2.0, -1.0], [0.3, 0.1], [-0.5, 1.5]])
    target = torch.tensor([0, 1, 1])
    gamma, alpha = 2.0, torch.tensor([0.25, 0.75])
    p = F.softmax(logits, 1)
    expected = np.mean([-alpha[t].item() * (1 - p[i, t].item()) ** gamma * math.log(p[i, t].item())
                        for i, t in enumerate(target.tolist())])
    assert FocalLoss(gamma, alpha)(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy_and_focuses_on_hard_examples():
    logits, target = torch.randn(16, 2), torch.randint(0, 2, (16,))
    assert FocalLoss(0.0)(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    easy, hard = torch.tensor([[4.0, -4.0]]), torch.tensor([[0.2, -0.2]])
    ratio_focal = FocalLoss(2.0)(easy, torch.tensor([0])) / FocalLoss(2.0)(hard, torch.tensor([0]))
    ratio_ce = F.cross_entropy(easy, torch.tensor([0])) / F.cross_entropy(hard, torch.tensor([0]))
    assert ratio_focal < 0.01 * ratio_ce  # easy examples are down-weighted


def test_class_weights_balance_the_classes():
    labels = np.array([0] * 10 + [1] * 50)
    w = class_weights(labels)
    assert w.tolist() == pytest.approx([3.0, 0.6])
    assert (w[0] * 10).item() == pytest.approx((w[1] * 50).item())  # equal total weight per class
    with pytest.raises(ValueError, match="every class"):
        class_weights([1, 1, 1])


def test_class_weights_follow_the_draws_not_the_items():
    """Balanced draws already counter the imbalance: weights from the sampler's draw weights are 1 per
    class (also with a replay stratum), and a sampler that draws 3 fakes per real gets the same weights
    as a set of 1 real : 3 fakes drawn uniformly."""
    labels = np.array([0] * 10 + [1] * 50)
    assert class_weights(labels, draw_weights=BalancedSampler(labels).weights).tolist() == pytest.approx([1.0, 1.0])
    strata = np.array([0] * 5 + [1] * 5 + [0] * 40 + [1] * 10)
    replayed = BalancedSampler(labels, strata=strata, shares=[0.5, 0.5]).weights
    assert class_weights(labels, draw_weights=replayed).tolist() == pytest.approx([1.0, 1.0])
    skewed = np.where(labels == 1, 3.0 / 50, 1.0 / 10)
    assert class_weights(labels, draw_weights=skewed).tolist() == pytest.approx(class_weights([0, 1, 1, 1]).tolist())


def test_weighted_ce_and_label_smoothing():
    labels = [0] * 10 + [1] * 50
    logits, target = torch.randn(8, 2), torch.randint(0, 2, (8,))
    w = class_weights(labels)
    assert build_loss("weighted_ce", labels)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, weight=w).item(), rel=1e-6)
    assert FocalLoss(0.0, label_smoothing=0.1)(logits, target).item() == pytest.approx(
        F.cross_entropy(logits, target, label_smoothing=0.1).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("hinge")
