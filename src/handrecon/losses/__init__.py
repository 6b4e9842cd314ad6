"""Loss terms of the method (terms), the mesh Laplacian (mesh) and the weighted objective (objective)."""

from handrecon.losses.mesh import UniformLaplacian, edges_from_faces
from handrecon.losses.objective import (
    METHOD_NAMES,
    TERM_NAMES,
    LossInputs,
    NonFiniteLossError,
    SSLObjective,
)

__all__ = [
    "METHOD_NAMES",
    "TERM_NAMES",
    "LossInputs",
    "NonFiniteLossError",
    "SSLObjective",
    "UniformLaplacian",
    "edges_from_faces",
]
