"""The handlers that do not train load none of the training code.

A deployed SuperNode starts a fresh ClientApp process for every message, so
whatever ``client.client_app`` imports at its top is paid by the census and
by every evaluation too. The training code (DP-SGD, per-unit gradients,
plain training) is imported by the train handler only, and so is Opacus
(1.3 s of imports): the RDP analysis every release is accounted with is loaded
from its file without the rest of the package (``common.privacy.accounting``).
"""

import subprocess
import sys

TRAINING_MODULES = (
    "client.training_round",
    "client.dp_training",
    "client.subject_dp_sgd",
    "client.per_sample_grads",
    "client.plain_training",
    "opacus",
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


def test_accounting_a_release_loads_no_opacus():
    """What the census and evaluation handlers compute: RDP ε of a history and a budget."""
    statement = (
        "import client.client_app\n"
        "from common.privacy.accounting import epsilon_rdp\n"
        "assert 0 < epsilon_rdp([(1.1, 0.05, 300), (2.0, 1.0, 3)], 1e-5) < 100"
    )
    assert _loaded_after(statement) == []


def test_the_probe_sees_training_code_when_it_is_imported():
    """The negative: importing the train handler's code is detected."""
    loaded = _loaded_after("import client.client_app, client.training_round")
    assert "client.training_round" in loaded and "client.subject_dp_sgd" in loaded
    assert "opacus" in _loaded_after("import client.client_app, client.dp_training")
