"""Closed-form checks of the camera and rotation helpers and the joint-order module."""

import math

import numpy as np
import torch

from handrecon import joints
from handrecon.geometry import camera
from handrecon.geometry.rotation import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    rot_z,
    rotation_6d_to_matrix,
)

K = torch.tensor([[[500.0, 0, 112.0], [0, 480.0, 100.0], [0, 0, 1]]])


def test_project_closed_form():
    pts = torch.tensor([[[0.1, -0.05, 0.5], [0.0, 0.0, 2.0]]])
    uv = camera.project(pts, K)
    assert torch.allclose(uv[0, 0], torch.tensor([112 + 500 * 0.2, 100 - 480 * 0.1]))
    assert torch.allclose(uv[0, 1], torch.tensor([112.0, 100.0]))
    assert np.allclose(camera.project_np(pts.numpy(), K.numpy()), uv.numpy(), atol=1e-4)


def test_place_is_similarity():
    pts = torch.randn(1, 5, 3)
    R = axis_angle_to_matrix(torch.tensor([[0.3, -0.2, 0.5]]))
    out = camera.place(pts, R, torch.tensor([[-2.0]]), torch.tensor([[1.0, 2.0, 3.0]]))
    # |s| is used: distances scale by 2, centroid moves to R c * 2 + T
    d0 = torch.cdist(pts, pts)
    d1 = torch.cdist(out, out)
    assert torch.allclose(d1, 2 * d0, atol=1e-5)
    assert torch.allclose(out[0, 0], torch.tensor([1.0, 2.0, 3.0]) + 2 * R[0] @ pts[0, 0], atol=1e-5)


def test_weak_perspective_round_trip_and_origin_projection():
    sigma, t_uv = torch.tensor([900.0]), torch.tensor([[120.0, 90.0]])
    T = camera.weak_to_translation(sigma, t_uv, K, scale=1.0)
    # the hand origin projects exactly onto t_uv
    assert torch.allclose(camera.project(T[:, None], K)[0, 0], t_uv[0], atol=1e-4)
    s2, t2 = camera.translation_to_weak(T, K)
    assert torch.allclose(s2, sigma) and torch.allclose(t2, t_uv, atol=1e-4)
    # a small offset dx at the origin's depth moves the projection by ~sigma*dx (fx/fy averaged)
    d = torch.tensor([[[0.001, 0.0, 0.0]]])
    du = camera.project(T[:, None] + d, K)[0, 0, 0] - t_uv[0, 0]
    assert abs(float(du) - 0.001 * 900 * 500 / 490) < 1e-2


def test_crop_matrix_maps_box_edges_to_image_edges():
    A = camera.crop_matrix((50.0, 60.0), 40.0, 80)
    # box edges c -+ size/2 -> image edges -0.5 and 79.5; the centre -> (80 - 1) / 2
    edge_lo = camera.apply_homography(A, np.array([[50 - 20, 60 - 20]]))
    edge_hi = camera.apply_homography(A, np.array([[50 + 20, 60 + 20]]))
    assert np.allclose(edge_lo, -0.5) and np.allclose(edge_hi, 79.5)
    assert np.allclose(camera.apply_homography(A, np.array([[50.0, 60.0]])), 39.5)


def test_update_K_keeps_projection_consistent():
    rng = np.random.default_rng(0)
    X = rng.uniform([-0.1, -0.1, 0.4], [0.1, 0.1, 0.8], (10, 3))
    Kn = K[0].numpy().astype(np.float64)
    A = camera.crop_matrix((130.0, 90.0), 150.0, 64) @ camera.resize_matrix((224, 224), (224, 224))
    uv = camera.project_np(X, Kn)
    assert np.allclose(camera.apply_homography(A, uv), camera.project_np(X, camera.update_K(Kn, A)), atol=1e-6)


def test_hflip_with_mirrored_points():
    rng = np.random.default_rng(1)
    X = rng.uniform([-0.1, -0.1, 0.4], [0.1, 0.1, 0.8], (10, 3))
    Kn = K[0].numpy().astype(np.float64)
    uv = camera.project_np(X, Kn)
    flipped = camera.apply_homography(camera.hflip_matrix(224), uv)
    Xm = X * np.array([-1.0, 1.0, 1.0])
    assert np.allclose(flipped, camera.project_np(Xm, camera.mirror_K(Kn, 224)), atol=1e-6)


def test_rotation_homography_exact():
    rng = np.random.default_rng(2)
    X = rng.uniform([-0.1, -0.1, 0.4], [0.1, 0.1, 0.8], (10, 3))
    Kn = K[0].numpy().astype(np.float64)
    Rz, H = camera.rotation_homography(Kn, math.radians(25))
    assert np.allclose(camera.apply_homography(H, camera.project_np(X, Kn)), camera.project_np(X @ Rz.T, Kn), atol=1e-6)


def test_square_box():
    c, s = camera.square_box_from_points(np.array([[10.0, 20.0], [30.0, 60.0]]), pad=1.5)
    assert c == (20.0, 40.0) and s == 60.0


def test_rotation_round_trips():
    torch.manual_seed(0)
    aa = torch.randn(100, 3) * 1.2
    aa = aa[aa.norm(dim=-1) < math.pi - 1e-3]
    R = axis_angle_to_matrix(aa)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3).expand_as(R), atol=1e-5)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(R)), atol=1e-5)
    assert torch.allclose(matrix_to_axis_angle(R), aa, atol=1e-4)
    # closed form: 90 degrees about z
    assert torch.allclose(axis_angle_to_matrix(torch.tensor([0, 0, math.pi / 2])), rot_z(torch.tensor(math.pi / 2)), atol=1e-6)
    # zero rotation and its gradient are finite
    z = torch.zeros(1, 3, requires_grad=True)
    axis_angle_to_matrix(z).sum().backward()
    assert torch.isfinite(z.grad).all()
    # 6D identity
    assert torch.allclose(rotation_6d_to_matrix(torch.tensor([1.0, 0, 0, 0, 1, 0])), torch.eye(3))


def test_joint_order_tables():
    assert len(joints.JOINT_NAMES) == 21 and joints.JOINT_NAMES[4] == "thumb_tip" and joints.JOINT_NAMES[9] == "middle_mcp"
    assert len(joints.BONES) == 20
    # round trip canonical <-> MANO+tips
    x = np.arange(21)
    assert (joints.reorder(joints.reorder(x[:, None], joints.CANONICAL_TO_MANO, 0), joints.MANO_TO_CANONICAL, 0)[:, 0] == x).all()
    # HO3D: the thumb tip is stored at index 16, canonical index 4
    assert joints.HO3D_TO_CANONICAL[4] == 16
    t = torch.arange(21.0)[None, :, None]
    assert joints.reorder(t, joints.HO3D_TO_CANONICAL)[0, 4, 0] == 16


def test_backproject_inverts_project():
    uv = torch.tensor([[10.0, 200.0], [112.0, 100.0]])
    z = torch.tensor([0.5, 0.9])
    Ks = K.expand(2, 3, 3).clone()
    Ks[1, 0, 1] = 3.0  # a skewed K too
    X = camera.backproject(uv, z, Ks)
    assert torch.allclose(X[:, 2], z)
    assert torch.allclose(camera.project(X[:, None], Ks)[:, 0], uv, atol=1e-4)


def test_crop_intrinsics_centre_and_focal():
    Kc = camera.crop_intrinsics(224)
    assert Kc[0, 0] == Kc[1, 1] == 2.6 * 224 and Kc[0, 2] == Kc[1, 2] == 111.5
    # the optical axis projects onto the crop's centre pixel
    assert np.allclose(camera.project_np(np.array([[0.0, 0.0, 0.5]]), Kc), 111.5)
