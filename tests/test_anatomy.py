"""handrecon.models.anatomy: the reference's pose-prior table, joint frames, natural poses."""

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


def test_limits_table_is_the_references():
    lim = torch.rad2deg(A.pose_limits(torch.float64))
    name = {n: i for i, n in enumerate(A.FINGER_JOINT_NAMES)}
    # S2HAND examples/losses.py tsa_pose_loss, [x, y, z] per joint, degrees (pi/8 = 22.5, 3 pi/16 = 33.75)
    want = {
        "index1": [(-5, 5), (-10, 10), (-10, 100)], "index2": [(-5, 5), (-5, 5), (-10, 100)],
        "middle1": [(-5, 5), (-10, 10), (-10, 100)], "middle3": [(-5, 5), (-5, 5), (-10, 100)],
        "little1": [(-20, 5), (-10, 20), (-10, 100)], "little2": [(-5, 5), (-5, 5), (-10, 100)],
        "ring1": [(-5, 5), (-10, 10), (-10, 100)], "ring3": [(-5, 5), (-5, 5), (-10, 100)],
        "thumb1": [(0, 90), (-22.5, 33.75), (-22.5, 22.5)], "thumb2": [(-5, 5), (-5, 5), (-22.5, 22.5)],
        "thumb3": [(-5, 5), (-5, 5), (-20, 100)],
    }  # fmt: skip
    for joint, rows in want.items():
        for c, (lo, hi) in enumerate(rows):
            assert lim[name[joint], c].tolist() == pytest.approx([lo, hi]), (joint, c)
    assert A.POSE_PRIOR_ROWS == 16


def test_violation_is_zero_inside_and_linear_outside():
    lim = A.pose_limits(torch.float64)
    g = torch.Generator().manual_seed(0)
    inside = lim[..., 0] + (lim[..., 1] - lim[..., 0]) * torch.rand(500, 15, 3, generator=g, dtype=torch.float64)
    assert torch.equal(A.pose_violation(inside), torch.zeros_like(inside))  # the table's interior costs 0
    for d in (0.01, 0.3, 1.0):
        above = lim[..., 1][None] + d
        below = lim[..., 0][None] - d
        assert torch.allclose(A.pose_violation(above), torch.full_like(above, d))
        assert torch.allclose(A.pose_violation(below), torch.full_like(below, d))
    x = (lim[..., 1][None] + 0.2).requires_grad_()
    A.pose_violation(x).sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def _mano_pose(**deg) -> torch.Tensor:
    """(1, 15, 3) raw MANO axis-angle from {joint name: (x, y, z) degrees}, the others 0."""
    pose = torch.zeros(1, 15, 3, dtype=torch.float64)
    for name, xyz in deg.items():
        pose[0, A.FINGER_JOINT_NAMES.index(name)] = torch.deg2rad(torch.tensor(xyz, dtype=torch.float64))
    return pose


def _prior(pose) -> float:
    from handrecon.losses.terms import pose_prior_loss

    return float(pose_prior_loss(A.pose_violation(pose)))


LONG = ("index", "middle", "ring", "little")


@pytest.mark.parametrize("name,pose,excess_deg", [
    ("flat hand", _mano_pose(), 0.0),
    ("fist", _mano_pose(**{f"{f}{k}": (0, 0, 90) for f in LONG for k in (1, 2, 3)}, thumb1=(60, 0, 10),
                        thumb2=(0, 0, 20), thumb3=(0, 0, 70)), 0.0),
    ("spread", _mano_pose(index1=(0, 8, 0), ring1=(0, -8, 0), little1=(-15, -9, 0), thumb1=(0, 30, -20)), 0.0),
    ("thumb opposition", _mano_pose(thumb1=(80, -20, 20), thumb2=(3, -3, 20), thumb3=(0, 0, 40)), 0.0),
    ("index hyper-flexed", _mano_pose(index2=(0, 0, 110)), 2 * 10.0),  # z 10 deg over, weighted 2
    ("over-spread", _mano_pose(index1=(0, 15, 0), little1=(0, -15, 0)), 5.0 + 5.0),
    ("thumb twisted past 90", _mano_pose(thumb1=(100, 0, 0)), 10.0),
    ("little twisted", _mano_pose(little1=(-30, 0, 40), middle2=(8, 0, 40)), 10.0 + 3.0),
])  # fmt: skip
def test_prior_on_mano_style_poses_by_hand(name, pose, excess_deg):
    # the reference's value: sum of the (weighted) excesses / (16 x 3), in radians
    assert _prior(pose) == pytest.approx(math.radians(excess_deg) / 48, abs=1e-12), name


def test_left_hand_pose_is_mirrored_to_the_right():
    right = _mano_pose(index1=(0, 15, 110), thumb1=(100, -30, 25))
    left = right * AA_MIRROR.double()
    assert torch.allclose(A.pose_violation(left, side="left"), A.pose_violation(right))
    assert not torch.allclose(A.pose_violation(left, side="right"), A.pose_violation(right))
    assert torch.allclose(A.clamp_to_limits(left, side="left"), A.clamp_to_limits(right) * AA_MIRROR.double())
    with pytest.raises(ValueError, match="side"):
        A.pose_violation(right, side="both")


def test_sampled_natural_poses_are_inside_the_references_box_and_varied(frames):
    g = torch.Generator().manual_seed(1)
    pose = A.sample_natural_pose(3000, frames, g)
    assert pose.shape == (3000, 15, 3) and pose.dtype == frames.dtype
    assert float(A.pose_violation(pose).max()) == 0.0  # the reference's prior accepts every sample
    bend = pose[..., 2]  # raw z: the flexion of the long fingers
    curl = bend[:, :12].mean(1)  # mean flexion of the long fingers
    assert (curl < math.radians(10)).float().mean() > 0.05  # open hands
    assert (curl > math.radians(65)).float().mean() > 0.1  # fists
    index, others = bend[:, 0:3].mean(1), bend[:, 3:12].mean(1)
    assert ((index < math.radians(15)) & (others > math.radians(60))).any()  # pointing
    assert float(pose[:, 12, 0].max()) > math.radians(40)  # opposed thumbs (thumb base x)
    # the distal joint follows the middle joint (joint coupling)
    corr = torch.corrcoef(torch.stack([bend[:, 1], bend[:, 2]]))[0, 1]
    assert corr > 0.9


def test_sampler_is_reproducible(frames):
    a = A.sample_natural_pose(8, frames, torch.Generator().manual_seed(3))
    b = A.sample_natural_pose(8, frames, torch.Generator().manual_seed(3))
    c = A.sample_natural_pose(8, frames, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    calm = A.sample_natural_pose(500, frames, torch.Generator().manual_seed(5), spread=0.0)
    # no twist noise without spread (the middle finger: straight along -x, so the box's clip of x is inactive)
    assert float(A.local_angles(calm, frames)[:, 4:6, 0].abs().max()) < 1e-12


def test_relaxed_hand_is_inside_the_references_box_and_slightly_curled(frames):
    pose = A.relaxed_pose(frames)
    assert float(A.pose_violation(pose[None]).max()) == 0.0
    bends = torch.rad2deg(pose[:12, 2])
    assert 10 < float(bends.mean()) < 40


def test_bad_shapes_are_clear_errors(frames):
    with pytest.raises(ValueError, match="local_angles"):
        A.local_angles(torch.zeros(2, 16, 3), frames)
    with pytest.raises(ValueError, match="joint_frames"):
        A.joint_frames(torch.zeros(15, 3))
    with pytest.raises(ValueError, match="sample_natural_pose"):
        A.sample_natural_pose(2, frames[:3])


def test_prior_reads_the_official_mano_pose_with_hands_mean(tmp_path):
    """hand_model=mano on a file of the official structure: the pose the prior sees is the raw
    axis-angle hands_mean + coefficients x hands_components (the reference's), for the file's recorded
    pose coefficients (hands_coeffs)."""
    import numpy as np

    from fixtures_mano import make_model, write_official_model

    data = make_model()
    model = HandModel(write_official_model(data, tmp_path / "MANO_RIGHT.pkl"), use_pca=True, num_pca_comps=45,
                      tip_vertex_ids=[0, 6, 12, 18, 24])
    coeffs = torch.as_tensor(data["hands_coeffs"], dtype=torch.float32)  # (8, 45)
    with torch.no_grad():
        local = model(coeffs, torch.zeros(len(coeffs), model.num_betas)).local_pose.double()
    want = torch.as_tensor(data["hands_mean"] + data["hands_coeffs"] @ data["hands_components"]).view(-1, 15, 3)
    assert torch.allclose(local, want, atol=1e-5)
    assert torch.allclose(A.pose_violation(local), A.pose_violation(want), atol=1e-5)
    assert float(A.pose_violation(want).sum()) > 0 and np.isfinite(_prior(want[:1]))
