"""Exact held-out metrics of a finished simulation, recomputed from its saved models.

fedmer reports held-out UF1 and UAR from counts that each held-out device
released with Gaussian noise, as a deployment must. In a simulation every
device's data is on this machine, so the researcher can also score each run
folder's ``final_model.pt`` on the held-out devices' clips directly, to see
how much of a figure is the model and how much is the evaluation noise. No
device would ever allow this; it reads the materialized device folders.

    python -m simulations.exact_heldout RUN_DIR [RUN_DIR ...]

A run folder is any folder with ``final_model.pt`` and ``devices/``; several
(the folds of a ``fedmer compare`` row) are pooled into one confusion matrix,
and, for a composite, one per source dataset (the subject's namespace).
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


def exact_confusions(run_dir: Path) -> dict[str, np.ndarray]:
    """Exact confusion of ``run_dir``'s final model on its held-out clips, by dataset."""
    results = json.loads((run_dir / "results.json").read_text())
    model_name = str(results["config"]["model"])
    model = build_model(model_name, num_classes=len(COMPOSITE_CLASSES))
    model.load_state_dict(torch.load(run_dir / "final_model.pt", weights_only=True))
    by_dataset: dict[str, np.ndarray] = {}
    for path in sorted((run_dir / "devices").glob("partition-*/node-config.json")):
        node = read_node_config(path)
        if node.role != HELDOUT:
            continue
        data = load_local_data(node, model_name)
        predicted = predict(model, data.features)
        datasets = np.array([s.split("/")[0] for s in data.subjects])
        for dataset in sorted(set(datasets)):
            mine = datasets == dataset
            cm = confusion_matrix(data.labels[mine], predicted[mine], len(COMPOSITE_CLASSES))
            by_dataset[dataset] = by_dataset.get(dataset, 0) + cm
    return by_dataset


def exact_confusion(run_dir: Path) -> np.ndarray:
    """Pooled exact confusion of ``run_dir``'s final model on its held-out devices."""
    total = np.zeros((len(COMPOSITE_CLASSES),) * 2, dtype=np.int64)
    for cm in exact_confusions(run_dir).values():
        total += cm
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    by_dataset: dict[str, np.ndarray] = {}
    for run in args.runs:
        for dataset, cm in exact_confusions(run).items():
            by_dataset[dataset] = by_dataset.get(dataset, 0) + cm
    cm = sum(by_dataset.values())
    metrics = summarize(np.asarray(cm))
    print(
        f"exact held-out UF1 {metrics['uf1']:.4f} UAR {metrics['uar']:.4f} "
        f"accuracy {metrics['accuracy']:.4f} over {int(np.sum(cm))} clips"
    )
    if len(by_dataset) > 1:
        for dataset, part in sorted(by_dataset.items()):
            m = summarize(np.asarray(part))
            print(
                f"  {dataset}: UF1 {m['uf1']:.4f} UAR {m['uar']:.4f} over {int(np.sum(part))} clips"
            )


if __name__ == "__main__":
    main()
