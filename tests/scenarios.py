"""The scenario most integration tests were written for, pinned explicitly.

fedmer's default is person-level: three labs with user-level DP-SGD and a
pretrained start (``tests/integration/test_person_level.py`` covers it). Tests
of other mechanisms (clip-level DP-SGD, SecAgg+, client-level DP, transports,
deployment) run one device per subject, clip-level DP-SGD and a random start,
so each figure they check keeps its meaning.
"""

from __future__ import annotations

CLIP_LEVEL = {"dp_unit": "clip", "silos": 0, "pretrain_subjects": 0}
CLIP_LEVEL_FLAGS = ["--dp-unit", "clip", "--silos", "0", "--pretrain-subjects", "0"]
