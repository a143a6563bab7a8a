"""A minimal protocol-buffers wire-format reader and writer (no dependency on `protobuf`).

Only what the weight readers need: a message is decoded into its fields without a schema, in
file order, as `(field_number, wire_type, value)`:

- wire type 0 (varint): `value` is the unsigned integer (use `signed64` for int64 fields);
- wire type 1 (64-bit) and 5 (32-bit): `value` is the raw little-endian bytes;
- wire type 2 (length-delimited: strings, bytes, sub-messages, packed repeated scalars): `value`
  is a zero-copy `memoryview` of the payload;
- groups (wire types 3/4, deprecated) are skipped.

Repeated scalar fields may be written packed (one wire-type-2 field) or unpacked (one field per
element), and parsers must accept both; `repeated_fixed` / `repeated_varint` do that.
Any malformed input raises `ProtobufError` naming the byte offset.
"""

from __future__ import annotations

import struct
from typing import Iterable, Iterator, Sequence

import numpy as np

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5

Field = tuple[int, int, "int | bytes | memoryview"]


class ProtobufError(ValueError):
  """The bytes are not a well-formed protocol-buffers message (truncated or corrupt)."""


# --- reading --------------------------------------------------------------------------------------

def read_varint(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
  """Decode one base-128 varint at `pos`; return (value, position after it)."""
  result = 0
  shift = 0
  n = len(buf)
  while True:
    if pos >= n:
      raise ProtobufError(f"truncated varint at byte {pos}")
    b = buf[pos]
    pos += 1
    result |= (b & 0x7F) << shift
    if not b & 0x80:
      return result, pos
    shift += 7
    if shift >= 70:
      raise ProtobufError(f"varint longer than 10 bytes at byte {pos}")


def signed64(value: int) -> int:
  """Interpret a decoded varint as a two's-complement int64 (how int64/int32 negatives are sent)."""
  value &= (1 << 64) - 1
  return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buf: bytes | memoryview, base: int = 0) -> Iterator[Field]:
  """Yield `(field_number, wire_type, value)` for every field of one message, in order.

  `base` only offsets the byte positions quoted in error messages.
  """
  buf = memoryview(buf)
  pos, n = 0, len(buf)
  while pos < n:
    start = pos
    key, pos = read_varint(buf, pos)
    field, wt = key >> 3, key & 7
    if field == 0:
      raise ProtobufError(f"invalid field number 0 at byte {base + start}")
    if wt == VARINT:
      value, pos = read_varint(buf, pos)
    elif wt == I64 or wt == I32:
      size = 8 if wt == I64 else 4
      if pos + size > n:
        raise ProtobufError(f"truncated {size * 8}-bit field {field} at byte {base + start}")
      value = bytes(buf[pos:pos + size])
      pos += size
    elif wt == LEN:
      length, pos = read_varint(buf, pos)
      if pos + length > n:
        raise ProtobufError(f"truncated field {field} at byte {base + start}: needs {length} bytes, "
                            f"{n - pos} left")
      value = buf[pos:pos + length]
      pos += length
    elif wt == SGROUP:
      pos = _skip_group(buf, pos, field, base)
      continue
    else:
      raise ProtobufError(f"invalid wire type {wt} (field {field}) at byte {base + start}")
    yield field, wt, value


def _skip_group(buf: memoryview, pos: int, field: int, base: int) -> int:
  n = len(buf)
  while True:
    if pos >= n:
      raise ProtobufError(f"unterminated group {field}")
    start = pos
    key, pos = read_varint(buf, pos)
    f, wt = key >> 3, key & 7
    if wt == EGROUP:
      if f != field:
        raise ProtobufError(f"mismatched end of group at byte {base + start}")
      return pos
    if wt == VARINT:
      _, pos = read_varint(buf, pos)
    elif wt in (I64, I32):
      pos += 8 if wt == I64 else 4
    elif wt == LEN:
      length, pos = read_varint(buf, pos)
      pos += length
    elif wt == SGROUP:
      pos = _skip_group(buf, pos, f, base)
    else:
      raise ProtobufError(f"invalid wire type {wt} at byte {base + start}")
    if pos > n:
      raise ProtobufError(f"truncated group {field}")


def parse(buf: bytes | memoryview) -> dict[int, list[tuple[int, "int | bytes | memoryview"]]]:
  """All fields of one message: `{field_number: [(wire_type, value), ...]}` in file order."""
  out: dict[int, list] = {}
  for field, wt, value in iter_fields(buf):
    out.setdefault(field, []).append((wt, value))
  return out


def repeated_fixed(entries: Sequence[tuple[int, object]], dtype: str, field: str = "field") -> np.ndarray:
  """Decode a repeated fixed-width scalar field (float, double, fixed32...) from its entries.

  `entries`: the `(wire_type, value)` list of one field number, packed chunks and/or single
  elements in any mix; `dtype`: the little-endian numpy dtype, e.g. "<f4" or "<f8".
  """
  dt = np.dtype(dtype)
  wire = I32 if dt.itemsize == 4 else I64
  chunks = []
  for wt, value in entries:
    if wt == LEN:
      if len(value) % dt.itemsize:
        raise ProtobufError(f"packed {field}: {len(value)} bytes is not a multiple of {dt.itemsize}")
      chunks.append(np.frombuffer(value, dt))
    elif wt == wire:
      chunks.append(np.frombuffer(value, dt))
    else:
      raise ProtobufError(f"{field}: wire type {wt} where {dt} values were expected")
  if not chunks:
    return np.zeros((0,), dt)
  return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def repeated_varint(entries: Sequence[tuple[int, object]], signed: bool = True,
                    field: str = "field") -> list[int]:
  """Decode a repeated varint field (int32/int64/enum/bool), packed or not."""
  out = []
  for wt, value in entries:
    if wt == VARINT:
      out.append(value)
    elif wt == LEN:
      pos, buf = 0, memoryview(value)
      while pos < len(buf):
        v, pos = read_varint(buf, pos)
        out.append(v)
    else:
      raise ProtobufError(f"{field}: wire type {wt} where integers were expected")
  return [signed64(v) for v in out] if signed else out


def last_varint(entries: Sequence[tuple[int, object]] | None, default: int = 0,
                field: str = "field") -> int:
  """An optional scalar varint field: the last occurrence wins (protobuf merge semantics)."""
  if not entries:
    return default
  return repeated_varint(entries[-1:], field=field)[-1]


def last_string(entries: Sequence[tuple[int, object]] | None, default: str = "",
                field: str = "field") -> str:
  """An optional string field (last occurrence wins), decoded as UTF-8."""
  if not entries:
    return default
  wt, value = entries[-1]
  if wt != LEN:
    raise ProtobufError(f"{field}: wire type {wt} where a string was expected")
  try:
    return bytes(value).decode("utf-8")
  except UnicodeDecodeError as e:
    raise ProtobufError(f"{field}: invalid UTF-8 ({e})") from None


# --- writing --------------------------------------------------------------------------------------

def encode_varint(value: int) -> bytes:
  """Base-128 varint; negative numbers as 10-byte two's complement (int64 convention)."""
  if value < 0:
    value += 1 << 64
  out = bytearray()
  while True:
    b = value & 0x7F
    value >>= 7
    if value:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def key(field: int, wire_type: int) -> bytes:
  """The tag of a field."""
  return encode_varint((field << 3) | wire_type)


def field_varint(field: int, value: int) -> bytes:
  """A varint field (int32/int64/uint/enum/bool)."""
  return key(field, VARINT) + encode_varint(int(value))


def field_bytes(field: int, value: bytes | str) -> bytes:
  """A length-delimited field: bytes, a string (UTF-8) or an encoded sub-message."""
  if isinstance(value, str):
    value = value.encode("utf-8")
  return key(field, LEN) + encode_varint(len(value)) + bytes(value)


def field_fixed32(field: int, value: float) -> bytes:
  """A 32-bit float field."""
  return key(field, I32) + struct.pack("<f", value)


def field_fixed64(field: int, value: float) -> bytes:
  """A 64-bit double field."""
  return key(field, I64) + struct.pack("<d", value)


def field_packed(field: int, values: np.ndarray | Iterable, dtype: str) -> bytes:
  """A packed repeated fixed-width field (e.g. dtype "<f4" for `repeated float`)."""
  data = np.ascontiguousarray(np.asarray(values, dtype=np.dtype(dtype))).tobytes()
  return field_bytes(field, data)


def field_unpacked(field: int, values: np.ndarray | Iterable, dtype: str) -> bytes:
  """The same repeated fixed-width field written one element per field (proto2 default)."""
  dt = np.dtype(dtype)
  wire = I32 if dt.itemsize == 4 else I64
  tag = key(field, wire)
  arr = np.asarray(values, dtype=dt).reshape(-1)
  return b"".join(tag + x.tobytes() for x in arr)


def field_packed_varints(field: int, values: Iterable[int]) -> bytes:
  """A packed repeated varint field (e.g. `repeated int64 dim = 1 [packed = true]`)."""
  return field_bytes(field, b"".join(encode_varint(int(v)) for v in values))
