"""Forensic filters: the published SRM kernels, the V3 filter bank and the Bayar constraint."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interceptor_lib.models import create_model, param_groups
from interceptor_lib.models.forensic_filters import (BayarConv2d, ForensicFilterBank, srm_kernels,
                                                     zhou_srm_kernels)

# Values as printed in Fridrich & Kodovsky 2012 (Fig. 2) and in Zhou et al. 2018's released code.
KV = [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]
SQUARE3 = [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]
SECOND_H = [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
EDGE3 = [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
EDGE5 = [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
THIRD_H = [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -3, 3, -1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
THIRD_DIAG = [[-1, 0, 0, 0, 0], [0, 3, 0, 0, 0], [0, 0, -3, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]


def t(rows, q):
    return torch.tensor(rows, dtype=torch.float32) / q


def test_zhou_srm_kernels_are_the_published_ones():
    k = zhou_srm_kernels()
    assert k.shape == (3, 1, 5, 5)
    torch.testing.assert_close(k[0, 0], t(KV, 12))
    torch.testing.assert_close(k[1, 0], t(SQUARE3, 4))
    torch.testing.assert_close(k[2, 0], t(SECOND_H, 2))


def test_the_30_srm_kernels():
    k = srm_kernels()
    assert len(k) == 30
    flat = torch.stack(list(k.values())).flatten(1)
    assert len({tuple(r.tolist()) for r in flat}) == 30  # all distinct
    torch.testing.assert_close(flat.sum(1), torch.zeros(30), atol=1e-6, rtol=0)  # high-pass: constant -> 0
    torch.testing.assert_close(k["square_5x5"], t(KV, 12))
    torch.testing.assert_close(k["square_3x3"], t(SQUARE3, 4))
    listed = list(k.values())
    for ref in (t(EDGE3, 4), t(EDGE5, 12), t(THIRD_H, 3), t(THIRD_DIAG, 3), t(SECOND_H, 2)):
        assert any(torch.equal(ref, v) for v in listed), ref
    counts = {p: sum(n.startswith(p) for n in k) for p in ("first", "second", "third", "edge_3", "edge_5", "square")}
    assert counts == {"first": 8, "second": 4, "third": 8, "edge_3": 4, "edge_5": 4, "square": 2}


def test_filter_bank_is_silent_on_flat_images_and_truncates():
    bank = ForensicFilterBank(truncation=3.0)
    flat = bank(torch.full((1, 3, 16, 16), 120.0))
    assert flat.shape == (1, 18, 16, 16) and flat.abs().max() < 1e-4  # float rounding of the /12 kernels
    noisy = bank(torch.rand(1, 3, 16, 16) * 255)
    assert noisy.abs().max() == 3.0


def _check_constraint(w):
    c = w.shape[-1] // 2
    torch.testing.assert_close(w[..., c, c], -torch.ones(w.shape[:2]))
    torch.testing.assert_close(w.sum((2, 3)) - w[..., c, c], torch.ones(w.shape[:2]), atol=1e-5, rtol=0)


def test_bayar_constraint_holds_at_forward_time_and_after_a_step():
    torch.manual_seed(0)
    conv = BayarConv2d(3, 3, 5)
    _check_constraint(conv.weight.detach())
    with torch.no_grad():
        conv.weight.add_(torch.randn_like(conv.weight))  # an unconstrained update
    _check_constraint(conv.constrained_weight().detach())  # forward uses the projection anyway
    w = conv.constrained_weight().detach()
    # a prediction error: a flat image gives 0, up to float rounding relative to the weights' size
    assert conv(torch.full((1, 3, 8, 8), 50.0)).abs().max() < 1e-5 * 50 * w.abs().sum((1, 2, 3)).max()


def test_bayar_constraint_after_an_optimizer_step_of_the_dual_stream_model():
    torch.manual_seed(0)
    model = create_model("dual_stream_v3", backbone="test_efficientnet", pretrained=False).train()
    opt = torch.optim.AdamW(param_groups(model), lr=1e-3)
    batch = {"image": torch.randn(3, 3, 64, 64), "label": torch.tensor([0, 1, 1])}
    before = model.forensic.bayar.weight.detach().clone()
    F.cross_entropy(model(batch)["logits"], batch["label"]).backward()
    opt.step()
    model.after_optimizer_step()
    w = model.forensic.bayar.weight.detach()
    assert not torch.equal(w, before)
    _check_constraint(w)
