"""``megc-like``: a synthetic benchmark as hard as the MEGC2019 composite, in its releases' layouts.

Importing this package has no side effects; :func:`generate_megc_like` writes files.
"""

from .generate import GROUND_TRUTH, generate_megc_like, label_agreement
from .spec import CASME2, SAMM, SMIC, LabSpec, MegcLikeSpec

__all__ = [
    "CASME2",
    "GROUND_TRUTH",
    "SAMM",
    "SMIC",
    "LabSpec",
    "MegcLikeSpec",
    "generate_megc_like",
    "label_agreement",
]
