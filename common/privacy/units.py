"""Which unit each mechanism protects.

A face belongs to a person, so the person (subject) is the unit fedmer
protects by default. Each device-side mechanism protects one unit:

* ``dp-sgd``: one clip (DP-SGD over clips); a subject with k clips is a group
  of k records;
* ``dp-sgd-subject``: one subject with all their clips (user-level DP-SGD);
* ``gaussian-counts``: one clip of a held-out device's confusion counts;
* ``gaussian-counts-subject``: one subject, whose clips (at most the
  mechanism's stated cap) all move the counts at once;
* ``skellam-share`` and the server's ``dp-fedavg``: one device's whole
  participation, which is one person on a one-subject device.

The person-level ε of a ledger is :mod:`common.privacy.person_level`'s.
"""

from __future__ import annotations

CLIP, SUBJECT, DEVICE = "clip", "subject", "device"
DP_SGD, DP_SGD_SUBJECT = "dp-sgd", "dp-sgd-subject"
DP_FEDAVG = "dp-fedavg"
GAUSSIAN_COUNTS, GAUSSIAN_COUNTS_SUBJECT = "gaussian-counts", "gaussian-counts-subject"
MECHANISM_UNITS = {
    DP_SGD: CLIP,
    DP_SGD_SUBJECT: SUBJECT,
    GAUSSIAN_COUNTS: CLIP,
    GAUSSIAN_COUNTS_SUBJECT: SUBJECT,
    "skellam-share": DEVICE,
    DP_FEDAVG: DEVICE,
}
DP_UNITS = (SUBJECT, CLIP)  # what a run may ask DP-SGD and evaluation to protect


def training_mechanism(dp_unit: str) -> str:
    """The device's DP-SGD mechanism for a run's ``dp-unit``."""
    return DP_SGD_SUBJECT if dp_unit == SUBJECT else DP_SGD


def evaluation_mechanism(dp_unit: str) -> str:
    """The held-out release mechanism for a run's ``dp-unit``."""
    return GAUSSIAN_COUNTS_SUBJECT if dp_unit == SUBJECT else GAUSSIAN_COUNTS
