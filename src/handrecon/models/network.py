"""The S2HAND network: image -> hand pose, shape, viewpoint, texture, lighting (+ 2D keypoint branch)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from handrecon.geometry import camera
from handrecon.geometry.rotation import axis_angle_to_matrix, matrix_to_axis_angle, rotation_6d_to_matrix
from handrecon.joints import JOINT_NAMES
from handrecon.models.encoder import Encoder
from handrecon.models.heads import AppearanceHead, HandRegressor, HeatmapAttention, ReferenceAppearanceHead
from handrecon.models.hourglass import KeypointBranch

#: the parts of the network a stage can train or freeze
PARTS = ("encoder", "regressor", "appearance", "kp_branch")
#: what the hand regressor reads besides the image feature (model.keypoints_in): None = the image
#: only (the method); "detections" = the 2D keypoints given to forward() (training: the batch's
#: offline detections; inference: a detector's, or the network's own 2D branch where none are
#: given); "branch" = always the network's own 2D branch (image-only at inference too)
KEYPOINT_INPUTS = (None, "detections", "branch")
#: how the regressed numbers place the hand in the camera (model.placement): centre_joint = handrecon's
#: (see HandReconNet); reference = the S2HAND reference code's: the MANO hand with the fixed root
#: rotation [pi, 0, 0] (about the wrist), then X_cam = T + |s| R X with T, s and R (axis-angle)
#: regressed directly
PLACEMENTS = ("centre_joint", "reference")
#: the appearance head (model.appearance): s2hand = handrecon's per-vertex albedo with bounded
#: offsets and squashed lighting; reference = the reference code's per-face colours and raw lighting
APPEARANCES = ("s2hand", "reference")
#: the reference's fixed root rotation (axis-angle) of the MANO hand
REFERENCE_ROOT_ROTATION = (torch.pi, 0.0, 0.0)


def missing_detections(conf: torch.Tensor) -> torch.Tensor:
    """conf (B, 21) -> (B,) True for images whose detector found no keypoint (confidence 0 everywhere):
    the network's own 2D branch stands in for them."""
    return conf.sum(-1) <= 0


@dataclass
class HandReconOutput:
    """Everything the network predicts for a batch (camera frame, metres, crop pixels)."""

    pose: torch.Tensor  # (B, pose_dim) PCA coefficients or axis-angle, as regressed
    betas: torch.Tensor  # (B, 10)
    rotmat: torch.Tensor  # (B, 3, 3) global rotation
    rot_aa: torch.Tensor  # (B, 3) global rotation, axis-angle
    scale: torch.Tensor  # (B, 1) |s| of X_cam = T + |s| R X
    transl: torch.Tensor  # (B, 3) T, metres
    local_pose: torch.Tensor  # (B, 15, 3) finger joint rotations, axis-angle, MANO joint order
    verts: torch.Tensor  # (B, V, 3) camera frame
    joints: torch.Tensor  # (B, 21, 3) camera frame, canonical order
    kp2d_proj: torch.Tensor  # (B, 21, 2) projected joints, crop pixels
    texture: torch.Tensor | None = None  # (B, V, 3) albedo; (B, T, T, 3) a UV albedo map (hand models with a texture
    # space); model.appearance=reference: the mean of the faces' colours around each vertex
    face_texture: torch.Tensor | None = None  # (B, F, 3) albedo per face (model.appearance=reference)
    lighting: torch.Tensor | None = None  # (B, 11)
    kp2d_stages: list[torch.Tensor] | None = None  # per hourglass stack (B, 21, 2)
    kp2d_conf: torch.Tensor | None = None  # (B, 21) last stack's confidence
    heatmaps: list[torch.Tensor] | None = None  # per stack (B, 21, S/4, S/4)
    mano_verts: torch.Tensor | None = None  # (B, 778, 3) camera frame, MANO topology (a model of another topology: NIMBLE)
    tex_coeffs: torch.Tensor | None = None  # (B, tex_dim) texture-space coefficients (NIMBLE)

    @property
    def eval_verts(self) -> torch.Tensor:
        """The mesh that evaluation, pred.json and the benchmark exports use: MANO topology where the
        hand model has another (NIMBLE), else ``verts``."""
        return self.mano_verts if self.mano_verts is not None else self.verts

    def detach(self) -> HandReconOutput:
        def d(v):
            if isinstance(v, torch.Tensor):
                return v.detach()
            if isinstance(v, list):
                return [t.detach() for t in v]
            return v

        return HandReconOutput(**{f.name: d(getattr(self, f.name)) for f in fields(self)})


class HandReconNet(nn.Module):
    """forward(image (B, 3, S, S) in [0, 1], K (B, 3, 3) of the crop) -> HandReconOutput.

    The hand is placed as X_cam = T + |s| R (X - X_c) with X_c the model-frame position of joint
    ``center_joint`` (default: the middle finger's MCP, near the hand's centre), so T is the
    camera-frame position of that joint: T = z K^-1 [u, v, 1] with (u, v) its image position and
    z = z_init * exp(2 tanh(dz / 2)). This keeps the parameterisation valid for any crop and K.

    ``keypoints_in`` (:data:`KEYPOINT_INPUTS`): the hand regressor may also read 2D keypoints, then
    it lifts detected keypoints to a hand instead of regressing the hand from pixels alone.

    ``placement="reference"`` (:data:`PLACEMENTS`) places the hand as the S2HAND reference code does
    instead: X_cam = T + |s| R X_root, with X_root the hand posed with the root rotation [pi, 0, 0]
    about its wrist and T (metres), s and R regressed directly (z_init, scale_init and center_joint
    are then unused; the reference initialises T's depth and s through the heads' biases,
    model.regressor_init=reference). ``regressor_heads``, ``regressor_init``: see
    :class:`HandRegressor`. ``appearance`` (:data:`APPEARANCES`). ``heatmap_attention``: the
    reference's option of multiplying the global feature by a factor computed from the 2D branch's
    features.
    """

    def __init__(self, hand_model: nn.Module, encoder: Encoder | dict | None = None, rot_repr: str = "6d",
                 z_init: float = 0.65, scale_init: float = 0.95, mean_shape: bool = False,
                 center_joint: str = "middle_mcp", use_appearance: bool = True, use_kp_branch: bool = True,
                 kp_branch: dict | None = None, regressor_hidden: tuple[int, ...] = (1024, 512),
                 keypoints_in: str | None = None, keypoint_features: int = 256, placement: str = "centre_joint",
                 regressor_heads: str = "linear", regressor_init: str = "zero", appearance: str = "s2hand",
                 heatmap_attention: bool = False):
        super().__init__()
        if placement not in PLACEMENTS:
            raise ValueError(f"model.placement={placement!r}: expected one of {PLACEMENTS}")
        if appearance not in APPEARANCES:
            raise ValueError(f"model.appearance={appearance!r}: expected one of {APPEARANCES}")
        self.placement = placement
        self.hand_model = hand_model
        if encoder is None:
            encoder = Encoder()
        elif isinstance(encoder, dict):
            encoder = Encoder(**encoder)
        self.encoder = encoder
        if center_joint not in JOINT_NAMES:
            raise ValueError(f"model.center_joint={center_joint!r} is not a joint name; expected one of {JOINT_NAMES}")
        self.center_joint = JOINT_NAMES.index(center_joint)
        self.z_init, self.scale_init, self.mean_shape = float(z_init), float(scale_init), bool(mean_shape)
        if keypoints_in not in KEYPOINT_INPUTS:
            raise ValueError(f"model.keypoints_in={keypoints_in!r}: expected one of {KEYPOINT_INPUTS} (null = image only)")
        if keypoints_in == "branch" and not use_kp_branch:
            raise ValueError("model.keypoints_in=branch needs the 2D keypoint branch (model.use_kp_branch=true)")
        self.keypoints_in = keypoints_in
        self.regressor = HandRegressor(encoder.global_channels, hand_model.pose_dim, hand_model.num_betas, rot_repr,
                                       tuple(regressor_hidden), int(keypoint_features) if keypoints_in else 0,
                                       heads=regressor_heads, init=regressor_init)
        if not use_appearance:
            self.appearance = None
        elif appearance == "reference":
            self.appearance = ReferenceAppearanceHead(encoder.low_channels, int(hand_model.faces.shape[0]))
        else:
            self.appearance = AppearanceHead(encoder.low_channels, hand_model.num_verts,
                                             texture_coeffs=getattr(hand_model, "tex_dim", 0))
        self.kp_branch = KeypointBranch(**(kp_branch or {})) if use_kp_branch else None
        if heatmap_attention:
            if self.kp_branch is None:
                raise ValueError("model.heatmap_attention=true needs the 2D keypoint branch (model.use_kp_branch=true)")
            width = self.kp_branch.lin_[-1][0].out_channels
            # part of the regressor (trained and frozen with it)
            self.regressor.attention = HeatmapAttention(width, encoder.global_channels)
        self.register_buffer("root_rotation", torch.tensor(REFERENCE_ROOT_ROTATION), persistent=False)
        for p in self.hand_model.parameters():  # the hand model is fixed data, never trained
            p.requires_grad_(False)

    # ------------------------------------------------------------------ parts
    def part(self, name: str) -> nn.Module | None:
        if name not in PARTS:
            raise ValueError(f"unknown network part {name!r}; expected one of {PARTS}")
        return getattr(self, name)

    # ------------------------------------------------------------------ forward
    def regressor_keypoints(self, image: torch.Tensor, keypoints: tuple[torch.Tensor, torch.Tensor] | None,
                            stages: list | None = None, missing: torch.Tensor | None = None) -> torch.Tensor | None:
        """The regressor's 2D keypoint input (B, 21, 3) [u, v in [-1, 1] of the crop, confidence], or
        None for an image-only regressor. keypoints: (uv (B, 21, 2) crop px, conf (B, 21)) or None.
        The 2D branch's last stage (``stages``), without gradient, stands in for all of them when none
        are given (or keypoints_in=branch), and for the images whose detections are all missing
        (confidence 0 everywhere: the detector found no hand; ``missing``, when already known)."""
        if self.keypoints_in is None:
            return None
        branch = None
        if stages is not None:
            branch = (stages[-1][1].detach(), stages[-1][2].detach())
        if keypoints is None or self.keypoints_in == "branch":
            if branch is None:
                raise ValueError("model.keypoints_in=detections: no 2D keypoints were given and this network has no "
                                 "2D branch to find them; pass keypoints=(uv, conf)")
            keypoints = branch
        elif branch is not None:
            missing = missing_detections(keypoints[1]) if missing is None else missing  # (B,)
            keypoints = (torch.where(missing[:, None, None], branch[0], keypoints[0]),
                         torch.where(missing[:, None], branch[1], keypoints[1]))
        uv, conf = keypoints
        H, W = image.shape[-2:]
        size = torch.tensor([W, H], dtype=uv.dtype, device=uv.device)
        return torch.cat([(2.0 * uv + 1.0) / size - 1.0, conf[..., None].to(uv.dtype)], -1)

    def forward(self, image: torch.Tensor, K: torch.Tensor, with_appearance: bool = True,
                with_kp_branch: bool = True, keypoints: tuple[torch.Tensor, torch.Tensor] | None = None) -> HandReconOutput:
        """image (B, 3, S, S) in [0, 1]; K (B, 3, 3). keypoints: for a regressor that reads 2D keypoints
        (model.keypoints_in=detections), (uv (B, 21, 2) crop px, conf (B, 21)); None: the network's
        own 2D branch. Ignored by an image-only regressor."""
        B, _, H, W = image.shape
        glob, low = self.encoder(image)
        # the regressor reads the 2D branch: always, or where no (or no usable) detections are given
        missing = missing_detections(keypoints[1]) if self.keypoints_in == "detections" and keypoints is not None else None
        branch_in = self.keypoints_in == "branch" or (
            self.keypoints_in is not None and (missing is None or bool(missing.any())))
        stages = None  # the 2D branch's (heatmaps, uv, conf) per stack, when asked for or read by the regressor
        attention = getattr(self.regressor, "attention", None)
        enc = None
        if self.kp_branch is not None and (with_kp_branch or branch_in or attention is not None):
            stages, enc = self.kp_branch(image, return_encoding=True)
        if attention is not None:
            glob = glob * attention(enc)
        raw = self.regressor(glob, self.regressor_keypoints(image, keypoints, stages, missing))
        betas = torch.zeros_like(raw["betas"]) if self.mean_shape else raw["betas"]
        if raw["rot"].shape[-1] == 6:
            rotmat = rotation_6d_to_matrix(raw["rot"])
            rot_aa = matrix_to_axis_angle(rotmat)
        else:
            rot_aa = raw["rot"]
            rotmat = axis_angle_to_matrix(rot_aa)
        if self.placement == "reference":
            root = self.root_rotation.to(raw["pose"].dtype).expand(B, 3)
            hand = self.hand_model(raw["pose"], betas, global_orient=root)  # rotated by pi about x at the wrist
            scale, transl = raw["scale"].abs(), raw["cam"]
            center = torch.zeros_like(hand.joints[:, :1])  # placed about the MANO frame's origin
            verts = camera.place(hand.verts, rotmat, scale, transl)
            joints = camera.place(hand.joints, rotmat, scale, transl)
        else:
            hand = self.hand_model(raw["pose"], betas)  # model frame, no global rotation
            center = hand.joints[:, self.center_joint : self.center_joint + 1]  # (B, 1, 3)
            # bounded, smooth parameterisation: scale in scale_init * [e^-1, e^1], depth in
            # z_init * [e^-2, e^2]; an unbounded depth lets a diverging step put the hand behind the camera
            scale = self.scale_init * torch.exp(torch.tanh(raw["scale"]))  # (B, 1)
            du, dv, dz = raw["cam"].unbind(-1)
            u = (du + 1.0) * (W / 2.0) - 0.5
            v = (dv + 1.0) * (H / 2.0) - 0.5
            z = self.z_init * torch.exp(2.0 * torch.tanh(dz / 2.0))
            transl = camera.backproject(torch.stack([u, v], -1), z, K)  # (B, 3)
            verts = camera.place(hand.verts - center, rotmat, scale, transl)
            joints = camera.place(hand.joints - center, rotmat, scale, transl)
        out = HandReconOutput(
            pose=raw["pose"], betas=betas, rotmat=rotmat, rot_aa=rot_aa, scale=scale, transl=transl,
            local_pose=hand.local_pose, verts=verts, joints=joints, kp2d_proj=camera.project(joints, K),
        )  # fmt: skip
        if hand.mano_verts is not None:
            out.mano_verts = camera.place(hand.mano_verts - center, rotmat, scale, transl)
        if self.appearance is not None and with_appearance:
            if isinstance(self.appearance, ReferenceAppearanceHead):
                out.face_texture, out.lighting = self.appearance(low)
                out.texture = face_to_vertex_colours(out.face_texture, self.hand_model.faces, self.hand_model.num_verts)
            else:
                out.texture, out.lighting = self.appearance(low)
                if self.appearance.texture_coeffs:  # the hand model's texture space -> its UV albedo map
                    out.tex_coeffs, out.texture = out.texture, self.hand_model.texture(out.texture)
        if stages is not None and with_kp_branch:
            out.heatmaps = [s[0] for s in stages]
            out.kp2d_stages = [s[1] for s in stages]
            out.kp2d_conf = stages[-1][2]
        return out

    @torch.no_grad()
    def predict_keypoints(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The trained 2D branch as a detector: image (B, 3, S, S) -> (uv (B, 21, 2) px, conf (B, 21))."""
        if self.kp_branch is None:
            raise RuntimeError("this model has no 2D keypoint branch (model.use_kp_branch=false)")
        stages = self.kp_branch(image)
        return stages[-1][1], stages[-1][2]


def face_to_vertex_colours(face_colours: torch.Tensor, faces: torch.Tensor, num_verts: int) -> torch.Tensor:
    """(B, F, 3) per-face colours -> (B, V, 3) per-vertex: the mean over the faces around each vertex
    (for mesh files and overlays; rendering uses the face colours themselves)."""
    B = face_colours.shape[0]
    idx = faces.reshape(-1).long()  # (3F,)
    src = face_colours.repeat_interleave(3, dim=1)  # (B, 3F, 3): each face's colour at its 3 corners
    total = face_colours.new_zeros(B, num_verts, 3).index_add_(1, idx, src)
    count = face_colours.new_zeros(num_verts).index_add_(0, idx, face_colours.new_ones(idx.shape[0]))
    return total / count.clamp_min(1.0)[None, :, None]
