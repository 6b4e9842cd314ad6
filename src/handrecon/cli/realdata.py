"""Real data needs MANO: the official FreiHAND / HO3D scorers compare MANO meshes (778 vertices).

With another hand model (the default open hand model, 1544 vertices) both scorers skip the mesh
error (they report -1) and their F-scores compare the other model's surface with MANO's
ground-truth surface; only the joint errors stay meaningful. :func:`check_mano_for_real_data` stops
train / evaluate with an error that says where to get MANO, unless ``allow_non_mano_on_real_data=true``;
then (and at export time) it warns loudly about what is lost.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from handrecon.logs import get_logger
from handrecon.models.hand_model import MANO_NUM_VERTS, gives_mano_meshes
from handrecon.models.mano_io import MANO_URL

log = get_logger("handrecon")  # rank zero only: one warning per run

OPT_OUT_KEY = "allow_non_mano_on_real_data"


def _what(data_cfg: DictConfig, hand_model) -> tuple[str, str]:
    name = str(OmegaConf.select(data_cfg, "name", default="real data"))
    n = int(getattr(hand_model, "num_verts", 0))
    source = getattr(hand_model, "source", type(hand_model).__name__)
    kind = "the open hand model" if getattr(hand_model, "is_openhand", False) else "a hand model that is not MANO"
    what = f"data={name} with {kind} ({n} vertices, {source})"
    lost = (f"the official {name} scorer compares MANO meshes ({MANO_NUM_VERTS} vertices): it skips the mesh error "
            "(reports -1) and its F@5 / F@15 compare this model's surface with MANO's ground truth (meaningless); "
            "only the joint errors stay valid")
    return what, lost


def check_mano_for_real_data(data_cfg: DictConfig, hand_model, allow: bool, task: str) -> bool:
    """-> True when nothing is lost. Real data (``data.mesh_needs_mano``) with a hand model without MANO
    meshes: ValueError unless ``allow``; with ``allow`` a loud warning, and False."""
    if not OmegaConf.select(data_cfg, "mesh_needs_mano", default=False) or gives_mano_meshes(hand_model):
        return True
    what, lost = _what(data_cfg, hand_model)
    if not allow:
        raise ValueError(
            f"task={task}: {what}: {lost}. Real data needs MANO: register and download it at {MANO_URL} "
            "(MANO_RIGHT.pkl), then pass `hand_model=mano hand_model.path=/dir/with/MANO_RIGHT.pkl`. "
            f"To go on without it anyway, pass `{OPT_OUT_KEY}=true`."
        )
    warn_non_mano(what, lost, task)
    return False


def warn_non_mano(what: str, lost: str, task: str) -> None:
    bar = "!" * 100
    log.warning("\n%s\n!! task=%s: %s (%s=true).\n!! What is lost: %s.\n!! Get MANO at %s and pass "
                "`hand_model=mano hand_model.path=...` to keep it.\n%s", bar, task, what, OPT_OUT_KEY, lost, MANO_URL, bar)


def warn_if_trained_without_mano(train_cfg: DictConfig, hand_model, task: str) -> bool:
    """Export time: a checkpoint trained on real data without MANO (it needed ``allow_non_mano_on_real_data``)
    -> loud warning, False."""
    if not OmegaConf.select(train_cfg, "data.mesh_needs_mano", default=False) or gives_mano_meshes(hand_model):
        return True
    what, lost = _what(train_cfg.data, hand_model)
    warn_non_mano(f"this checkpoint was trained on {what}", lost, task)
    return False
