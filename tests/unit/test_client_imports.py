"""The handlers that do not train load none of the training code.

A deployed SuperNode starts a fresh ClientApp process for every message, so
whatever ``client.client_app`` imports at its top is paid by the census and
by every evaluation too. The training code (DP-SGD, per-unit gradients,
plain training) is imported by the train handler only. Opacus itself is
still loaded: its RDP accountant, which every release is accounted with, sits
in a package whose ``__init__`` imports the privacy engine.
"""

import subprocess
import sys

TRAINING_MODULES = (
    "client.training_round",
    "client.dp_training",
    "client.subject_dp_sgd",
    "client.per_sample_grads",
    "client.plain_training",
)

PROBE = """
import sys
{statement}
print(",".join(m for m in {modules!r} if m in sys.modules))
"""


def _loaded_after(statement: str) -> list[str]:
    code = PROBE.format(statement=statement, modules=TRAINING_MODULES)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_client_app_module_imports_no_training_code():
    assert _loaded_after("import client.client_app") == []


def test_the_probe_sees_training_code_when_it_is_imported():
    """The negative: importing the train handler's code is detected."""
    loaded = _loaded_after("import client.client_app, client.training_round")
    assert "client.training_round" in loaded and "client.subject_dp_sgd" in loaded
