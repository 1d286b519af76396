"""Exact held-out metrics of a finished simulation, recomputed from its saved models.

fedmer reports held-out UF1 and UAR from counts that each held-out device
released with Gaussian noise, as a deployment must. In a simulation every
device's data is on this machine, so the researcher can also score each run
folder's ``final_model.pt`` on the held-out devices' clips directly, to see
how much of a figure is the model and how much is the evaluation noise. No
device would ever allow this; it reads the materialized device folders.

    python -m simulations.exact_heldout RUN_DIR [RUN_DIR ...]

A run folder is any folder with ``final_model.pt`` and ``devices/``; several
(the folds of a ``fedmer compare`` row) are pooled into one confusion matrix.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from client.inference import predict
from client.local_data import load_local_data
from common.labels import COMPOSITE_CLASSES
from common.metrics import confusion_matrix, summarize
from common.models import build_model
from common.node_config import HELDOUT, read_node_config


def exact_confusion(run_dir: Path) -> np.ndarray:
    """Pooled exact confusion of ``run_dir``'s final model on its held-out devices."""
    results = json.loads((run_dir / "results.json").read_text())
    model_name = str(results["config"]["model"])
    model = build_model(model_name, num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(torch.load(run_dir / "final_model.pt", weights_only=True))
    total = np.zeros((len(COMPOSITE_CLASSES),) * 2, dtype=np.int64)
    for path in sorted((run_dir / "devices").glob("partition-*/node-config.json")):
        node = read_node_config(path)
        if node.role == HELDOUT:
            data = load_local_data(node, model_name)
            total += confusion_matrix(
                data.labels, predict(model, data.features), len(COMPOSITE_CLASSES)
            )
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    cm = sum(exact_confusion(run) for run in args.runs)
    metrics = summarize(np.asarray(cm))
    print(
        f"exact held-out UF1 {metrics['uf1']:.4f} UAR {metrics['uar']:.4f} "
        f"accuracy {metrics['accuracy']:.4f} over {int(np.sum(cm))} clips"
    )


if __name__ == "__main__":
    main()
