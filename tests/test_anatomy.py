"""handrecon.models.anatomy: joint frames, twist/splay/bend angles, limits, natural poses."""

from __future__ import annotations

import math

import pytest
import torch

from handrecon.joints import MANO_PARENTS
from handrecon.models import anatomy as A
from handrecon.models.hand_model import HandModel

AA_MIRROR = torch.tensor([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def model():
    return HandModel(None, use_pca=False, flat_hand_mean=True)


@pytest.fixture(scope="module")
def frames(model):
    f = A.joint_frames(model.template_joints.double(), MANO_PARENTS, "right")  # float64, exact
    assert torch.allclose(f.float(), model.joint_frames, atol=1e-6)
    return f


def test_frames_are_rotations_built_on_the_bones(model, frames):
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(frames @ frames.transpose(1, 2), eye.expand(15, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(frames), torch.ones(15, dtype=torch.float64), atol=1e-6)
    J = model.template_joints.double()
    for j in range(1, 16):
        children = [c for c, p in enumerate(MANO_PARENTS) if p == j]
        bone = (J[children[0]] - J[j]) if children else (J[j] - J[MANO_PARENTS[j]])
        assert torch.allclose(frames[j - 1, 0], -bone / bone.norm(), atol=1e-6)  # twist: proximal along the bone


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_pure_rotation_about_a_frame_axis_comes_back_exactly(frames, axis):
    theta = torch.linspace(-1.2, 1.5, 15, dtype=torch.float64)
    pose = theta[:, None] * frames[:, axis]  # (15, 3): rotate each joint about its own axis
    ang = A.local_angles(pose[None], frames)[0]
    expect = torch.zeros(15, 3, dtype=torch.float64)
    expect[:, axis] = theta
    assert torch.allclose(ang, expect, atol=1e-12)
    assert torch.allclose(A.angles_to_pose(ang, frames), pose, atol=1e-12)


def test_positive_bend_curls_towards_the_palm_and_positive_twist_pronates(model, frames):
    rest = model(torch.zeros(1, 45), torch.zeros(1, 10)).joints[0]
    palm_normal = torch.linalg.cross(rest[5] - rest[0], rest[17] - rest[0])  # index, little knuckles: palm side
    palm_normal = palm_normal / palm_normal.norm()
    for row, tip in ((0, 8), (3, 12), (9, 16), (6, 20)):  # knuckles of index, middle, ring, little
        ang = torch.zeros(1, 15, 3, dtype=torch.float64)
        ang[0, row, 2] = math.radians(60)
        pose = A.angles_to_pose(ang, frames).reshape(1, 45).float()
        moved = model(pose, torch.zeros(1, 10)).joints[0, tip] - rest[tip]
        assert float(moved @ palm_normal) > 0.02
    # pronating the thumb's base (positive twist) turns the thumb's flexion towards the fingers
    bend = torch.zeros(1, 15, 3, dtype=torch.float64)
    bend[0, 14, 2] = math.radians(80)
    twisted = bend.clone()
    twisted[0, 12, 0] = math.radians(60)
    tips = [model(A.angles_to_pose(a, frames).reshape(1, 45).float(), torch.zeros(1, 10)).joints[0, 4] for a in (bend, twisted)]
    assert (tips[1] - rest[8]).norm() < (tips[0] - rest[8]).norm()  # closer to the index fingertip


def test_left_frames_mirror_the_right(model, frames):
    J = model.template_joints.double()
    left = A.joint_frames(J * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64), MANO_PARENTS, side="left")
    assert torch.allclose(left, frames * AA_MIRROR.double(), atol=1e-12)
    pose = torch.randn(4, 15, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5
    assert torch.allclose(A.local_angles(pose * AA_MIRROR.double(), left), A.local_angles(pose, frames), atol=1e-12)


def test_limits_table_matches_the_method():
    lim = torch.rad2deg(A.joint_limits(torch.float64))
    name = {n: i for i, n in enumerate(A.FINGER_JOINT_NAMES)}
    assert lim[name["thumb1"], 0].tolist() == pytest.approx([0.0, 90.0])
    assert lim[name["little1"], 1].tolist() == pytest.approx([-20.0, 20.0])
    assert lim[name["index1"], 1].tolist() == pytest.approx([-10.0, 10.0])
    assert lim[name["middle2"], 2].tolist() == pytest.approx([-10.0, 100.0])
    assert lim[name["thumb3"], 2].tolist() == pytest.approx([-20.0, 100.0])
    assert lim[name["ring3"], 0].tolist() == pytest.approx([-5.0, 5.0])


def test_violation_is_zero_inside_and_linear_outside():
    lim = A.joint_limits(torch.float64)
    mid = lim.mean(-1)[None]  # (1, 15, 3) inside every range
    assert torch.equal(A.limit_violation(mid), torch.zeros_like(mid))
    for d in (0.01, 0.3, 1.0):
        above = lim[..., 1][None] + d
        below = lim[..., 0][None] - d
        assert torch.allclose(A.limit_violation(above), torch.full_like(above, d))
        assert torch.allclose(A.limit_violation(below), torch.full_like(below, d))
    x = (lim[..., 1][None] + 0.2).requires_grad_()
    A.limit_violation(x).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_sampled_natural_poses_are_inside_the_limits_and_varied(frames):
    g = torch.Generator().manual_seed(1)
    pose = A.sample_natural_pose(3000, frames, g)
    assert pose.shape == (3000, 15, 3) and pose.dtype == frames.dtype
    ang = A.local_angles(pose, frames)
    assert float(A.limit_violation(ang).max()) == 0.0
    curl = ang[:, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 2].mean(1)  # mean bend of the long fingers
    assert (curl < math.radians(10)).float().mean() > 0.05  # open hands
    assert (curl > math.radians(65)).float().mean() > 0.1  # fists
    index, others = ang[:, 0:3, 2].mean(1), ang[:, 3:12, 2].mean(1)
    assert ((index < math.radians(15)) & (others > math.radians(60))).any()  # pointing
    assert float(ang[:, 12, 0].max()) > math.radians(40)  # opposed thumbs
    # the distal joint follows the middle joint (joint coupling)
    corr = torch.corrcoef(torch.stack([ang[:, 1, 2], ang[:, 2, 2]]))[0, 1]
    assert corr > 0.9


def test_sampler_is_reproducible(frames):
    a = A.sample_natural_pose(8, frames, torch.Generator().manual_seed(3))
    b = A.sample_natural_pose(8, frames, torch.Generator().manual_seed(3))
    c = A.sample_natural_pose(8, frames, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    calm = A.sample_natural_pose(500, frames, torch.Generator().manual_seed(5), spread=0.0)
    assert float(A.local_angles(calm, frames)[:, 1:3, 0].abs().max()) < 1e-12  # no twist noise without spread


def test_relaxed_hand_is_inside_the_limits_and_slightly_curled():
    ang = A.relaxed_angles()
    assert float(A.limit_violation(ang[None]).max()) == 0.0
    bends = torch.rad2deg(ang[:12, 2])
    assert 10 < float(bends.mean()) < 40


def test_bad_shapes_are_clear_errors(frames):
    with pytest.raises(ValueError, match="local_angles"):
        A.local_angles(torch.zeros(2, 16, 3), frames)
    with pytest.raises(ValueError, match="joint_frames"):
        A.joint_frames(torch.zeros(15, 3))
    with pytest.raises(ValueError, match="sample_natural_pose"):
        A.sample_natural_pose(2, frames[:3])
