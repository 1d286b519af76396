"""On-device cache of per-clip features, keyed by content, safe to interrupt.

Key = sha256 of (content hash of the clip source, onset/apex/offset, preprocessing
config fingerprint).  Content rather than path: renaming or moving a dataset
keeps its cache, while re-encoding or editing a video invalidates it.  Hashing a
large video is slow, so each source's content hash is itself cached, keyed by
(path, size, mtime) of the file or of every frame file in a folder.

Layout under `root`:

    features/ab/<key>.npz    the (3, F, F) float32 array (and the (T, 2, F, F)
                             flow sequence when sequences are configured)
    features/ab/<key>.json   metadata: settings, flow algorithm, face box, clip
    sources/<sha of path>.json   cached content hashes

Every file is written to a temporary file in the same folder and moved into place
with os.replace (atomic), the .json last: an entry counts only when its .json
exists, so a preparation killed at any point leaves no half-written entry, and a
rerun recomputes exactly the missing ones.  Files are created 0600 (mkstemp):
features are derived from biometric video and must not be readable by other
users of the device.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from client.datasets.clip_record import ClipError, ClipRecord
from client.datasets.frames import IMAGE_EXTENSIONS, frame_number_of
from client.preprocessing.features import PreprocessConfig

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class SourceUnreadable(ClipError):
    category = "missing_file"


def _atomic_write(path: Path, write: Any) -> None:
    """Write via `write(file_object)` to a temp file, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    data = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
    _atomic_write(path, lambda handle: handle.write(data))


class FeatureCache:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._hash_memo: dict[tuple[Any, ...], str] = {}

    # ---- content hashing -------------------------------------------------

    def _source_files(self, source: Path) -> list[Path]:
        if source.is_dir():
            # The files frames.py would read: numbered images.  Sorted by name so
            # the hash does not depend on directory listing order.
            return sorted(
                p
                for p in source.iterdir()
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and not p.name.startswith(".")
                and frame_number_of(p.name) is not None
            )
        return [source]

    def content_hash(self, source: Path | str) -> str:
        """sha256 of the clip's bytes (frame folders: names and bytes of every frame)."""
        source = Path(source)
        try:
            files = self._source_files(source)
            stats = [(p.name, st.st_size, st.st_mtime_ns) for p in files for st in (p.stat(),)]
        except FileNotFoundError:
            raise SourceUnreadable("file or folder not found", path=source) from None
        except OSError as exc:
            raise SourceUnreadable(f"cannot read: {exc.strerror or exc}", path=source) from exc
        stamp = (str(source.resolve()), source.is_dir(), tuple(stats))
        memo = self._hash_memo.get(stamp)
        if memo is not None:
            return memo

        record_path = (
            self.root / "sources" / (hashlib.sha256(stamp[0].encode()).hexdigest()[:32] + ".json")
        )
        stamp_json = json.loads(json.dumps(stamp))  # tuples -> lists, as stored on disk
        try:
            stored = json.loads(record_path.read_text())
            if stored.get("stamp") == stamp_json:
                self._hash_memo[stamp] = stored["sha256"]
                return stored["sha256"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # missing or unreadable record: hash again

        digest = hashlib.sha256()
        try:
            for path in files:
                if source.is_dir():
                    digest.update(path.name.encode() + b"\0")
                with open(path, "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                digest.update(b"\0")
        except OSError as exc:
            raise SourceUnreadable(f"cannot read: {exc.strerror or exc}", path=source) from exc
        value = digest.hexdigest()
        self._hash_memo[stamp] = value
        try:
            _write_json(record_path, {"stamp": stamp_json, "sha256": value})
        except OSError as exc:  # a read-only cache still works, just rehashes
            log.warning("cannot store content hash for %s: %s", source, exc)
        return value

    # ---- entries ---------------------------------------------------------

    def key(self, record: ClipRecord, config: PreprocessConfig) -> str:
        payload = json.dumps(
            {
                "content": self.content_hash(record.source),
                "onset": record.onset,
                "apex": record.apex,
                "offset": record.offset,
                "config": config.fingerprint(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / "features" / key[:2]
        return folder / f"{key}.npz", folder / f"{key}.json"

    def get(
        self, record: ClipRecord, config: PreprocessConfig, key: str | None = None
    ) -> np.ndarray | None:
        """The cached features, or None when absent or unusable (then recompute)."""
        entry = self.get_entry(record, config, key)
        return None if entry is None else entry[0]

    def get_entry(
        self, record: ClipRecord, config: PreprocessConfig, key: str | None = None
    ) -> tuple[np.ndarray, dict[str, Any]] | None:
        key = key or self.key(record, config)
        npz_path, json_path = self._paths(key)
        if not json_path.exists():
            return None
        expected = (3, config.feature_size, config.feature_size)
        try:
            metadata = json.loads(json_path.read_text())
            with np.load(npz_path, allow_pickle=False) as data:
                features = np.asarray(data["features"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", npz_path, exc)
            return None
        if (
            features.shape != expected
            or features.dtype != np.float32
            or not np.isfinite(features).all()
        ):
            log.warning(
                "ignoring cache entry %s: shape %s dtype %s",
                npz_path,
                features.shape,
                features.dtype,
            )
            return None
        return features, metadata

    def get_sequence(
        self, record: ClipRecord, config: PreprocessConfig, key: str | None = None
    ) -> np.ndarray | None:
        """The cached flow sequence, or None (not configured, absent or unusable)."""
        if not config.sequence_length:
            return None
        npz_path, json_path = self._paths(key or self.key(record, config))
        if not json_path.exists():
            return None
        try:
            with np.load(npz_path, allow_pickle=False) as data:
                sequence = np.asarray(data["flow_sequence"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring flow sequence of cache entry %s: %s", npz_path, exc)
            return None
        expected = (config.sequence_length, 2, config.feature_size, config.feature_size)
        return sequence if sequence.shape == expected and np.isfinite(sequence).all() else None

    def put(
        self,
        record: ClipRecord,
        config: PreprocessConfig,
        features: np.ndarray,
        metadata: dict[str, Any],
        key: str | None = None,
        sequence: np.ndarray | None = None,
    ) -> str:
        """Store one clip's features (and flow sequence) atomically; returns the key."""
        arrays = {"features": np.ascontiguousarray(features, dtype=np.float32)}
        if sequence is not None:
            arrays["flow_sequence"] = np.ascontiguousarray(sequence, dtype=np.float32)
        key = key or self.key(record, config)
        npz_path, json_path = self._paths(key)
        _atomic_write(npz_path, lambda handle: np.savez(handle, **arrays))
        entry = {
            **metadata,
            "cache_key": key,
            "clip": {
                "clip_id": record.clip_id,
                "dataset": record.dataset,
                "subject": record.subject,
                "source": str(record.source),
                "onset": record.onset,
                "apex": record.apex,
                "offset": record.offset,
                "content_sha256": self.content_hash(record.source),
            },
        }
        _write_json(json_path, entry)  # last: its presence marks the entry complete
        return key
