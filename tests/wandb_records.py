"""Read back what an offline W&B run recorded, from its ``run-<id>.wandb`` transaction log.

wandb 0.31 writes no ``wandb-summary.json`` for an offline run and no longer ships a Python reader
for the log (``wandb.sdk.internal.datastore`` is gone), so the tests read the file themselves.

File format (LevelDB's log format with W&B's file header)::

    file   := header block*
    header := ":W&B"  magic: uint16 = 0xBEE1  version: uint8 = 0        (7 bytes, little-endian)
    block  := chunk* zero-padding?                       (32 KiB; the header sits in the first one)
    chunk  := crc: uint32  length: uint16  type: uint8  data[length]
              crc = CRC-32 (zlib) of the type byte followed by data
              type: 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST (a record split across blocks)

A chunk never starts in the last 6 bytes of a block; those are zero padding. Each reassembled
record is a serialised ``wandb.proto.wandb_internal_pb2.Record``.

Values (history, summary, config) are items with a ``key`` or a ``nested_key`` path and a
``value_json``; the helpers below turn them into nested dicts, e.g. a logged ``wandb.Histogram``
under "weights/W1" reads ``{"weights/W1": {"_type": "histogram", "bins": [...], "values": [...]}}``.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from wandb.proto import wandb_internal_pb2

FILE_HEADER = struct.Struct("<4sHB")
FILE_IDENT, FILE_MAGIC, FILE_VERSION = b":W&B", 0xBEE1, 0
CHUNK_HEADER = struct.Struct("<IHB")
BLOCK_LEN = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def run_file(run_dir) -> Path:
    """The one ``run-*.wandb`` log in an offline run folder."""
    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one run-*.wandb file in {run_dir}, found {files}.")
    return files[0]


def _check_file_header(data: bytes, path: Path) -> None:
    if len(data) < FILE_HEADER.size:
        raise ValueError(f"{path}: too short for a W&B run file ({len(data)} bytes).")
    header = FILE_HEADER.unpack_from(data)
    if header != (FILE_IDENT, FILE_MAGIC, FILE_VERSION):
        raise ValueError(f"{path}: not a W&B run file (header {header}).")


def _chunks(data: bytes, path: Path):
    """Yield (type, payload) of every chunk after the file header, checking each CRC."""
    pos = FILE_HEADER.size
    while pos + CHUNK_HEADER.size <= len(data):
        left_in_block = BLOCK_LEN - pos % BLOCK_LEN
        if left_in_block < CHUNK_HEADER.size:
            pos += left_in_block
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        payload = data[pos + CHUNK_HEADER.size: pos + CHUNK_HEADER.size + length]
        if len(payload) != length or zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise ValueError(f"{path}: corrupt chunk at byte {pos}.")
        yield kind, payload
        pos += CHUNK_HEADER.size + length


def read_records(path) -> list:
    """Every ``Record`` in a W&B run file, in the order written."""
    path = Path(path)
    data = path.read_bytes()
    _check_file_header(data, path)
    records, pending = [], None
    for kind, payload in _chunks(data, path):
        if kind == FULL:
            records.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind in (MIDDLE, LAST) and pending is not None:
            pending += payload
            if kind == LAST:
                records.append(pending)
                pending = None
        else:
            raise ValueError(f"{path}: chunk type {kind} out of sequence.")
    parsed = []
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        parsed.append(record)
    return parsed


def of_type(records: list, kind: str) -> list:
    """The payloads of the records of one kind ("history", "summary", "artifact", "exit", …)."""
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


def _apply(target: dict, items, remove=()) -> dict:
    """Set each item's value at its key path in ``target`` (nested dicts); drop ``remove`` paths."""
    for item in items:
        *parents, leaf = list(item.nested_key) or [item.key]
        node = target
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = json.loads(item.value_json)
    for item in remove:
        *parents, leaf = list(item.nested_key) or [item.key]
        node = target
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return target


def history_rows(records: list) -> list[dict]:
    """One dict per ``run.log`` call, in order."""
    return [_apply({}, h.item) for h in of_type(records, "history")]


def summary(records: list) -> dict:
    """The run summary: every summary update applied in order."""
    result: dict = {}
    for s in of_type(records, "summary"):
        _apply(result, s.update, s.remove)
    return result


def run_record(records: list):
    """The ``RunRecord`` (project, display_name, run_group, tags, run_id, config)."""
    (run,) = of_type(records, "run")
    return run


def config(records: list) -> dict:
    """The run config: the config the run started with, then every later update."""
    result = _apply({}, run_record(records).config.update)
    for c in of_type(records, "config"):
        _apply(result, c.update, c.remove)
    return result


def artifacts(records: list) -> list:
    """The ``ArtifactRecord`` of every logged artifact."""
    return of_type(records, "artifact")


def saved_files(records: list) -> list[str]:
    """Paths (relative to the run's ``files`` folder) of every file the run saved."""
    return [f.path for files in of_type(records, "files") for f in files.files]


def exit_codes(records: list) -> list[int]:
    """The exit code of each exit record (one per finished run)."""
    return [e.exit_code for e in of_type(records, "exit")]


def read_table(run_dir, ref: dict) -> dict:
    """The JSON of a logged ``wandb.Table`` (``{"columns": [...], "data": [...]}``) from the
    history value that refers to it."""
    return json.loads((Path(run_dir) / "files" / ref["path"]).read_text())
