"""Loss terms of the method (terms), the cotangent mesh Laplacian (mesh) and the weighted objective (objective)."""

from handrecon.losses.mesh import CotangentLaplacian, cotangent_weights
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
    "CotangentLaplacian",
    "cotangent_weights",
]
