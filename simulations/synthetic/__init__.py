"""Deterministic synthetic micro-expression cohort (faces, AU motion, files).

Importing this package has no side effects; generation happens only when
:func:`generate_cohort` or :func:`write_casme2_layout` is called.
"""

from .action_units import ACTION_UNITS, CLASSES
from .casme2 import write_casme2_layout
from .cohort import MANIFEST_COLUMNS, CohortSpec, generate_cohort, subject_clips, subject_identity
from .face_render import FaceGeometry, FaceRenderer, render_face
from .identity import Identity, sample_identity

__all__ = [
    "ACTION_UNITS",
    "CLASSES",
    "MANIFEST_COLUMNS",
    "CohortSpec",
    "FaceGeometry",
    "FaceRenderer",
    "Identity",
    "generate_cohort",
    "render_face",
    "sample_identity",
    "subject_clips",
    "subject_identity",
    "write_casme2_layout",
]
