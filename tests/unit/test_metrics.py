import numpy as np
import pytest

from common.metrics import accuracy, confusion_matrix, summarize, uar, uf1
from server.held_out_evaluation import held_out_metrics

CM = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])


def test_uf1_matches_hand_computation():
    # class 0: TP5 FP2 FN1 -> 10/13; class 1: TP3 FP1 FN3 -> 6/10; class 2: TP4 FP1 FN0 -> 8/9
    assert uf1(CM) == pytest.approx((10 / 13 + 6 / 10 + 8 / 9) / 3)


def test_uar_matches_hand_computation():
    assert uar(CM) == pytest.approx((5 / 6 + 3 / 6 + 4 / 4) / 3)


def test_accuracy_and_confusion_from_labels():
    y_true = [0] * 6 + [1] * 6 + [2] * 4
    y_pred = [0] * 5 + [1] + [0, 0, 1, 1, 1, 2] + [2] * 4
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == CM.tolist()
    assert accuracy(cm) == pytest.approx(12 / 16)


def test_absent_class_is_left_out_not_counted_as_zero():
    cm = np.array([[3, 0, 0], [1, 2, 0], [0, 0, 0]])
    assert uar(cm) == pytest.approx((1 + 2 / 3) / 2)
    assert uf1(cm) == pytest.approx((6 / 7 + 4 / 5) / 2)


def test_held_out_devices_are_pooled_before_scoring():
    from common.wire import EvaluateReply

    def reply(device: str, keep) -> EvaluateReply:
        rows = tuple(tuple(int(CM[i, j]) if keep(i) else 0 for j in range(3)) for i in range(3))
        # Through the wire format and back, as the server receives it.
        return EvaluateReply.from_record(EvaluateReply(device, rows, 0.0, "e").to_record(), 3)

    a, b = reply("a", lambda i: i < 2), reply("b", lambda i: i == 2)
    pooled = held_out_metrics([a, b], 3)
    assert pooled["per_device"]["b"][2] == CM[2].tolist()
    assert pooled["confusion"] == CM.tolist()
    assert pooled["uf1"] == pytest.approx(summarize(CM)["uf1"])


def test_released_counts_are_pooled_without_clipping_bias():
    """Clipping noisy counts at 0 before pooling biases UF1 down; pooling raw sums does not."""
    from common.metrics import summarize_released

    rng = np.random.default_rng(0)
    truth = np.diag([8.0, 8.0, 8.0])  # 40 devices that classify perfectly
    raw = [truth + rng.normal(0.0, 2.0, size=(3, 3)) for _ in range(40)]
    unbiased = summarize_released(sum(raw))["uf1"]
    clipped = summarize(sum(np.clip(np.rint(r), 0, None) for r in raw))["uf1"]
    assert abs(unbiased - 1.0) < 0.02
    assert clipped < unbiased - 0.05  # the bias the raw pooling avoids
