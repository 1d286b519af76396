"""What may leave a device, enforced on the device.

Two checks, both on every reply: it must parse as exactly one message of the
wire schema (:mod:`common.wire`), so no record, metric or info field that the
schema does not declare can leave; and its values must be of the allowed
kinds and sizes:

* ``arrays``: an ArrayRecord whose names, shapes and dtypes are exactly those
  of the global model the device received;
* ``metrics``: a MetricRecord of scalar numbers;
* ``info``: a ConfigRecord of scalars and short strings (role, device id, why a
  round was declined), plus the signed privacy-ledger entry of the reply under
  ``ledger-entry`` (preceded, one per line, by at most
  ``MAX_UNRECEIVED_ENTRIES`` earlier entries of the device's chain that a
  coordinator which crashed mid-round never received).

The ledger entry is the one deliberate exception to the short-string limit: a
signed entry (hash, public key and signature included) is about 600
characters. It is let through only if each of its lines parses as exactly a
ledger entry, whose fields are all scalars, so it cannot smuggle anything else
out.

In SecAgg+ mode Flower's legacy workflow names the same three things
``fitres.parameters``, ``fitres.num_examples`` and ``fitres.metrics`` (plus
``fitres.status``); the same rules apply to them, with the model received in
``fitins.parameters`` as the reference.

Anything else, such as a frame, a flow tensor, a list of per-clip values, a
long string or an extra record, is refused before it is sent. The guard is an
allowlist, not a detector of faces: whatever is not declared here cannot leave.
"""

from __future__ import annotations

from dataclasses import dataclass

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from common.privacy.ledger import LedgerError, decode_entry
from common.wire import (
    ARRAYS,
    INFO,
    LEDGER_ENTRY,
    LEGACY_FIT_IN,
    LEGACY_METRICS,
    LEGACY_NUM_EXAMPLES,
    LEGACY_PARAMETERS,
    LEGACY_STATUS,
    METRICS,
    WireError,
    parse_reply,
)

MAX_STRING_LENGTH = 256
MAX_LEDGER_ENTRY_LENGTH = 2048
MAX_UNRECEIVED_ENTRIES = 8


@dataclass(frozen=True)
class ReplySchema:
    """The record names one kind of reply may use."""

    arrays: str
    metrics: str
    info: tuple[str, ...]


MESSAGE_API = ReplySchema(ARRAYS, METRICS, (INFO,))
LEGACY_FIT = ReplySchema(LEGACY_PARAMETERS, LEGACY_NUM_EXAMPLES, (LEGACY_METRICS, LEGACY_STATUS))


class PayloadViolation(RuntimeError):
    """An outgoing message carries something that must not leave the device."""


def check_outgoing(
    content: RecordDict, global_arrays: ArrayRecord | None, schema: ReplySchema = MESSAGE_API
) -> None:
    """Raise :class:`PayloadViolation` unless ``content`` fits the allowlist."""
    allowed = (schema.arrays, schema.metrics, *schema.info)
    for key in content.keys():
        if key not in allowed:
            raise PayloadViolation(f"record {key!r} is not allowed to leave the device")
    for key, array_record in content.array_records.items():
        _check_arrays(key, array_record, global_arrays, schema)
    for key, metric_record in content.metric_records.items():
        if key != schema.metrics:
            raise PayloadViolation(f"metric record must be named {schema.metrics!r}, not {key!r}")
        _check_metrics(metric_record)
    for key, config_record in content.config_records.items():
        if key not in schema.info:
            raise PayloadViolation(f"config record must be named {schema.info[0]!r}, not {key!r}")
        _check_info(config_record)


def check_reply(reply: RecordDict, request: RecordDict, message_type: str) -> None:
    """Check a reply against the request it answers (Message API or legacy SecAgg+ fit)."""
    if LEGACY_FIT_IN in request.array_records:
        check_outgoing(reply, legacy_reference(request.array_records[LEGACY_FIT_IN]), LEGACY_FIT)
    else:
        check_outgoing(reply, request.array_records.get(ARRAYS))
    try:
        parse_reply(message_type, reply)
    except WireError as exc:
        raise PayloadViolation(f"a {message_type} reply must fit the wire schema: {exc}") from None


def legacy_reference(record: ArrayRecord) -> ArrayRecord:
    """Legacy Parameters carry serialized arrays without shapes; decode them to compare."""
    return ArrayRecord(
        {key: Array(record[key].numpy()) for key in record.keys()}  # np.save bytes
    )


def _check_arrays(
    key: str, record: ArrayRecord, reference: ArrayRecord | None, schema: ReplySchema
) -> None:
    if key != schema.arrays:
        raise PayloadViolation(f"array record must be named {schema.arrays!r}, not {key!r}")
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
        if name == LEDGER_ENTRY:
            _check_ledger_entry(value)
        elif isinstance(value, str):
            if len(value) > MAX_STRING_LENGTH:
                raise PayloadViolation(
                    f"info {name!r} is a string of {len(value)} characters; "
                    f"the limit is {MAX_STRING_LENGTH}"
                )
        elif not isinstance(value, (bool, int, float)):
            raise PayloadViolation(
                f"info {name!r} is a {type(value).__name__}; only scalars and short strings may leave"
            )


def _check_ledger_entry(value: object) -> None:
    if not isinstance(value, str):
        raise PayloadViolation(f"info {LEDGER_ENTRY!r} must be a string")
    lines = value.split("\n")
    if len(lines) > 1 + MAX_UNRECEIVED_ENTRIES:
        raise PayloadViolation(
            f"info {LEDGER_ENTRY!r} holds {len(lines)} lines; at most "
            f"{1 + MAX_UNRECEIVED_ENTRIES} ledger entries may leave with one reply"
        )
    for line in lines:
        if len(line) > MAX_LEDGER_ENTRY_LENGTH:
            raise PayloadViolation(
                f"info {LEDGER_ENTRY!r}: each entry must be at most "
                f"{MAX_LEDGER_ENTRY_LENGTH} characters"
            )
        try:
            decode_entry(line)
        except LedgerError as exc:
            raise PayloadViolation(f"info {LEDGER_ENTRY!r} is not a ledger entry: {exc}") from None
