"""Self-blended pseudo-fakes: the crop changes only inside the mask, the transforms and the blend
ratio stay within their params, and the same (seed, epoch, index) gives the same bytes."""

import cv2
import numpy as np
import pytest
from media import face_frames

from interceptor_lib.data.pseudo_fakes import (SelfBlendParams, blend_rng, face_mask, self_blend, self_blend_clip,
                                               transformed_copy)

SIZE = 112


@pytest.fixture(scope="module")
def crop():
    """A face crop as the cache holds one: the astronaut's face, centred, 112 px."""
    return np.ascontiguousarray(face_frames(1)[0][25:137, 55:167])


@pytest.mark.parametrize("index", range(12))
def test_a_pseudo_fake_differs_from_its_crop_only_inside_the_mask(crop, index):
    fake, mask = self_blend(crop, blend_rng(0, 1, index))
    assert fake.shape == crop.shape and fake.dtype == np.uint8
    outside = mask == 0
    assert outside.any() and np.array_equal(fake[outside], crop[outside])
    assert (fake[~outside] != crop[~outside]).any()
    # the mask is the face's: none in the crop's corners, some at its centre
    corners = [mask[:8, :8], mask[:8, -8:], mask[-8:, :8], mask[-8:, -8:]]
    assert max(c.max() for c in corners) == 0 and mask[SIZE // 2, SIZE // 2] > 0


def test_the_blend_ratio_and_the_transforms_stay_within_their_params(crop):
    p = SelfBlendParams(ratios=[0.5])
    for i in range(8):
        _, mask = self_blend(crop, blend_rng(0, 0, i), p)
        assert 0 <= mask.min() and mask.max() <= 0.5 + 1e-6
    # every transform at zero: the copy is the crop, and so is the pseudo-fake
    still = SelfBlendParams(rgb_shift=0, saturation=0, contrast=0, brightness=0, p_downscale=0, p_sharpen=0,
                            p_noise=0, shading=0, shift=0, scale=[1.0, 1.0])
    assert np.array_equal(transformed_copy(crop, blend_rng(0, 0, 0), still), crop)
    assert np.array_equal(self_blend(crop, blend_rng(0, 0, 0), still)[0], crop)
    # a colour shift alone moves each channel by at most rgb_shift (+ 1 for rounding)
    shift = SelfBlendParams(**{**still.__dict__, "rgb_shift": 10})
    diff = transformed_copy(crop, blend_rng(0, 0, 1), shift).astype(int) - crop
    assert np.abs(diff).max() <= 10 + 1
    # a frequency change alone keeps the brightness; a sharpen adds detail, a downscale takes it away
    def detail(x):
        return np.abs(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean()
    for kind in ("p_sharpen", "p_downscale"):
        one = SelfBlendParams(**{**still.__dict__, kind: 1.0})
        for i in range(4):
            copy = transformed_copy(crop, blend_rng(0, 0, i), one)
            assert abs(copy.mean() - crop.mean()) < 3  # clipping at 0 / 255 aside
            assert (detail(copy) > 1.1 * detail(crop)) if kind == "p_sharpen" else (detail(copy) < 0.9 * detail(crop))
    # grain alone: noise of about the drawn sigma, centred (clipping at 0 / 255 aside)
    grain = SelfBlendParams(**{**still.__dict__, "p_noise": 1.0, "noise_sigma": [4.0, 4.0]})
    diff = transformed_copy(crop, blend_rng(0, 0, 2), grain).astype(float) - crop
    inside = (crop > 16) & (crop < 239)
    assert 3.5 < diff[inside].std() < 4.5 and abs(diff[inside].mean()) < 0.5
    # a lighting ramp alone: a gain within 1 +- shading, brighter on one side of the face than the other
    ramp = SelfBlendParams(**{**still.__dict__, "shading": 0.2, "p_shading": 1.0})
    for i in range(4):
        copy = transformed_copy(crop, blend_rng(0, 0, i), ramp).astype(float)
        gain = (copy + 0.5) / (crop.astype(float) + 0.5)
        lit = crop > 40  # where rounding moves the ratio little
        assert 0.8 - 0.02 <= gain[lit].min() and gain[lit].max() <= 1.2 + 0.02
        assert gain[lit].max() - gain[lit].min() > 0.01
    with pytest.raises(ValueError, match="ratios"):
        SelfBlendParams(ratios=[1.5]).check()
    for bad, name in (({"aspect": 3.0}, "aspect"), ({"noise_sigma": [8.0, 2.0]}, "noise_sigma"),
                      ({"p_noise": 1.5}, "p_noise"), ({"shading": 0.9}, "shading"),
                      ({"p_shading": -0.1}, "p_shading"), ({"sharpen": [0.5, 2.0]}, "sharpen")):
        with pytest.raises(ValueError, match=name):
            SelfBlendParams(**bad).check()
    with pytest.raises(ValueError, match="axes"):
        SelfBlendParams(axes=[0.9, 0.5]).check()
    SelfBlendParams().check()


def test_the_same_seed_epoch_and_index_give_the_same_bytes(crop):
    a, ma = self_blend(crop, blend_rng(3, 2, 7))
    b, mb = self_blend(crop, blend_rng(3, 2, 7))
    assert np.array_equal(a, b) and np.array_equal(ma, mb)
    for other in (blend_rng(3, 2, 8), blend_rng(3, 3, 7), blend_rng(4, 2, 7)):
        assert not np.array_equal(a, self_blend(crop, other)[0])


def test_a_clip_is_blended_with_one_mask_and_one_transform(crop):
    frames = np.stack([crop, crop, crop])
    clip = self_blend_clip(frames, 0, 0, 5)
    assert np.array_equal(clip[0], clip[1]) and np.array_equal(clip[1], clip[2])
    assert np.array_equal(clip[0], self_blend(crop, blend_rng(0, 0, 5))[0])
    assert face_mask((SIZE, SIZE), blend_rng(0, 0, 5), SelfBlendParams()).shape == (SIZE, SIZE)
