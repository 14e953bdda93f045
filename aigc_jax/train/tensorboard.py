"""A light TensorBoard event-file writer: scalars only, no TensorFlow needed.

An event file is a TFRecord stream (length, masked CRC-32C of the length, payload,
masked CRC-32C of the payload) of `Event` protocol buffers; we encode the few fields
scalars need by hand: Event{wall_time=1, step=2, file_version=3, summary=5, session_log=6},
Summary{value=1}, Summary.Value{tag=1, simple_value=2}, SessionLog{status=1} with START=1.
"""
from __future__ import annotations

import math
import os
import socket
import struct
import time

_CRC32C_POLY = 0x82F63B78  # Castagnoli, reflected
_CRC32C_TABLE = []
for _byte in range(256):
    _crc = _byte
    for _ in range(8):
        _crc = (_crc >> 1) ^ _CRC32C_POLY if _crc & 1 else _crc >> 1
    _CRC32C_TABLE.append(_crc)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


FLOAT32_MAX = 3.4028234663852886e38


def as_float32(value) -> float:
    """A value TensorBoard's float32 field can hold: beyond float32's range it is +-inf."""
    value = float(value)
    return math.copysign(math.inf, value) if abs(value) > FLOAT32_MAX else value


def _event_fields(wall_time: float, step=None) -> bytes:
    """Event.wall_time (a double) and, when given, Event.step."""
    fields = struct.pack("<Bd", 1 << 3 | 1, wall_time)
    return fields if step is None else fields + _varint(2 << 3) + _varint(step)


def encode_scalar_event(step: int, values: dict, wall_time: float) -> bytes:
    summary = b"".join(
        _length_delimited(1, _length_delimited(1, tag.encode()) + struct.pack("<Bf", 2 << 3 | 5, as_float32(v)))
        for tag, v in values.items())
    return _event_fields(wall_time, step) + _length_delimited(5, summary)


def encode_version_event(wall_time: float) -> bytes:
    return _event_fields(wall_time) + _length_delimited(3, b"brain.Event:2")


def encode_session_start(step: int, wall_time: float) -> bytes:
    """SessionLog START at `step`: TensorBoard drops the events of earlier files at or after this
    step, so the steps an interrupted run logged past its last checkpoint are not shown twice."""
    return _event_fields(wall_time, step) + _length_delimited(6, _varint(1 << 3) + _varint(1))


def frame_record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


class EventWriter:
    """Appends scalar summaries to a new events.out.tfevents.* file in `logdir`; a run resumed
    from step s starts its file with a session start at s + 1 (see encode_session_start)."""

    def __init__(self, logdir: str, resume_step: int = 0):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        self._file = open(self.path, "ab")
        self._file.write(frame_record(encode_version_event(time.time())))
        if resume_step:
            self._file.write(frame_record(encode_session_start(resume_step + 1, time.time())))

    def scalars(self, step: int, values: dict) -> None:
        self._file.write(frame_record(encode_scalar_event(step, values, time.time())))

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
