"""The schema of what may leave a device, enforced on the device.

A reply may carry only:

* ``arrays``: an ArrayRecord whose names, shapes and dtypes are exactly those
  of the global model the device received;
* ``metrics``: a MetricRecord of scalar numbers;
* ``info``: a ConfigRecord of scalars and short strings (role, device id, why a
  round was declined).

Anything else, such as a frame, a flow tensor, a list of per-clip values, a
long string or an extra record, is refused before it is sent. The guard is an
allowlist, not a detector of faces: whatever is not declared here cannot leave.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

MAX_STRING_LENGTH = 256
ARRAYS_KEY, METRICS_KEY, INFO_KEY = "arrays", "metrics", "info"


class PayloadViolation(RuntimeError):
    """An outgoing message carries something that must not leave the device."""


def check_outgoing(content: RecordDict, global_arrays: ArrayRecord | None) -> None:
    """Raise :class:`PayloadViolation` unless ``content`` fits the allowlist."""
    for key in content.keys():
        if key not in (ARRAYS_KEY, METRICS_KEY, INFO_KEY):
            raise PayloadViolation(f"record {key!r} is not allowed to leave the device")
    for key, record in content.array_records.items():
        _check_arrays(key, record, global_arrays)
    for key, record in content.metric_records.items():
        if key != METRICS_KEY:
            raise PayloadViolation(f"metric record must be named {METRICS_KEY!r}, not {key!r}")
        _check_metrics(record)
    for key, record in content.config_records.items():
        if key != INFO_KEY:
            raise PayloadViolation(f"config record must be named {INFO_KEY!r}, not {key!r}")
        _check_info(record)


def _check_arrays(key: str, record: ArrayRecord, reference: ArrayRecord | None) -> None:
    if key != ARRAYS_KEY:
        raise PayloadViolation(f"array record must be named {ARRAYS_KEY!r}, not {key!r}")
    if reference is None:
        raise PayloadViolation("model arrays may only be sent in reply to a model")
    if list(record.keys()) != list(reference.keys()):
        extra = sorted(set(record.keys()) - set(reference.keys()))
        missing = sorted(set(reference.keys()) - set(record.keys()))
        raise PayloadViolation(
            f"array names differ from the global model (extra {extra}, missing {missing})"
        )
    for name, array in record.items():
        expected = reference[name]
        if tuple(array.shape) != tuple(expected.shape) or array.dtype != expected.dtype:
            raise PayloadViolation(
                f"array {name!r} has shape {tuple(array.shape)} dtype {array.dtype}; "
                f"the global model has {tuple(expected.shape)} {expected.dtype}"
            )


def _check_metrics(record: MetricRecord) -> None:
    for name, value in record.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PayloadViolation(
                f"metric {name!r} is a {type(value).__name__}; only scalar numbers may leave"
            )


def _check_info(record: ConfigRecord) -> None:
    for name, value in record.items():
        if isinstance(value, str):
            if len(value) > MAX_STRING_LENGTH:
                raise PayloadViolation(
                    f"info {name!r} is a string of {len(value)} characters; "
                    f"the limit is {MAX_STRING_LENGTH}"
                )
        elif not isinstance(value, (bool, int, float)):
            raise PayloadViolation(
                f"info {name!r} is a {type(value).__name__}; only scalars and short strings may leave"
            )
