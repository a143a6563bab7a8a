"""Read the constant tensors of a frozen TensorFlow GraphDef (`.pb`) without TensorFlow.

Field numbers (tensorflow/core/framework/*.proto):

    GraphDef:          node = 1 (NodeDef)
    NodeDef:           name = 1, op = 2, input = 3, device = 4, attr = 5 (map<string, AttrValue>)
    map entry:         key = 1, value = 2
    AttrValue:         type = 6 (DataType), tensor = 8 (TensorProto)
    TensorProto:       dtype = 1, tensor_shape = 2, tensor_content = 4, float_val = 5,
                       double_val = 6, int_val = 7, half_val = 13
    TensorShapeProto:  dim = 2 (Dim: size = 1), unknown_rank = 3
    DataType:          DT_FLOAT = 1, DT_DOUBLE = 2, DT_BFLOAT16 = 14, DT_HALF = 19

Frozen inception graphs (`tensorflow_inception_graph.pb`, Lucid's `InceptionV1.pb`) store each
weight as a `Const` node whose "value" attribute holds the tensor, e.g. `conv2d0_w` (HWIO) and
`conv2d0_b`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Mapping

import numpy as np

from cv_jax.weights.errors import WeightsError
from cv_jax.weights.formats import protobuf as pb

DT_FLOAT, DT_DOUBLE, DT_INT32, DT_BFLOAT16, DT_HALF = 1, 2, 3, 14, 19
_FLOAT_TYPES = {DT_FLOAT: "<f4", DT_DOUBLE: "<f8", DT_HALF: "<f2", DT_BFLOAT16: "bf16"}
# TensorProto fields holding typed values
T_DTYPE, T_SHAPE, T_CONTENT, T_FLOAT, T_DOUBLE, T_INT, T_HALF = 1, 2, 4, 5, 6, 7, 13


def read_constants(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """`{node name: float32 array}` for every `Const` node with a floating-point value.

  Non-float constants (shapes, indices) and all other nodes are skipped. Raises WeightsError
  on a file that is not a GraphDef or a tensor whose data do not match its shape.
  """
  path = pathlib.Path(path)
  data = path.read_bytes()
  if not data:
    raise WeightsError(f"{path} is empty")
  try:
    consts, n_nodes = _read_graph(data)
  except pb.ProtobufError as e:
    raise WeightsError(f"{path} is not a valid GraphDef (corrupt or truncated protobuf: {e})") from None
  except WeightsError as e:
    raise WeightsError(f"{path}: {e}") from None
  if n_nodes == 0:
    raise WeightsError(f"{path} is not a TensorFlow GraphDef (no nodes)")
  return consts


def _read_graph(data: bytes) -> tuple[dict[str, np.ndarray], int]:
  out: dict[str, np.ndarray] = {}
  n = 0
  for field, wt, value in pb.iter_fields(data):
    if field != 1:
      continue
    if wt != pb.LEN:
      raise pb.ProtobufError(f"GraphDef.node has wire type {wt}, not a message")
    n += 1
    node = pb.parse(value)
    name = pb.last_string(node.get(1), field="NodeDef.name")
    op = pb.last_string(node.get(2), field="NodeDef.op")
    if op != "Const":
      continue
    for _, entry in node.get(5, []):
      e = pb.parse(entry)
      if pb.last_string(e.get(1), field="attr key") != "value" or 2 not in e:
        continue
      attr = pb.parse(e[2][-1][1])
      if 8 not in attr:
        continue
      arr = _read_tensor(attr[8][-1][1], name)
      if arr is not None:
        if name in out:
          raise WeightsError(f"duplicate node name {name!r}")
        out[name] = arr
  return out, n


def _read_tensor(buf, name: str) -> np.ndarray | None:
  t = pb.parse(buf)
  dtype = pb.last_varint(t.get(T_DTYPE), 0)
  if dtype not in _FLOAT_TYPES:
    return None
  shape: tuple[int, ...] = ()
  if T_SHAPE in t:
    s = pb.parse(t[T_SHAPE][-1][1])
    if pb.last_varint(s.get(3), 0):
      raise WeightsError(f"constant {name!r} has unknown rank")
    shape = tuple(pb.last_varint(pb.parse(d).get(1), 0) for _, d in s.get(2, []))
    if any(d < 0 for d in shape):
      raise WeightsError(f"constant {name!r} has an unknown dimension: {shape}")
  count = int(np.prod(shape, dtype=np.int64))
  code = _FLOAT_TYPES[dtype]
  if t.get(T_CONTENT):
    raw = b"".join(bytes(v) for _, v in t[T_CONTENT])
    values = _from_bytes(raw, code, name)
  elif dtype == DT_FLOAT and T_FLOAT in t:
    values = pb.repeated_fixed(t[T_FLOAT], "<f4", field=f"{name} float_val")
  elif dtype == DT_DOUBLE and T_DOUBLE in t:
    values = pb.repeated_fixed(t[T_DOUBLE], "<f8", field=f"{name} double_val")
  elif dtype in (DT_HALF, DT_BFLOAT16) and T_HALF in t:
    bits = np.asarray(pb.repeated_varint(t[T_HALF], signed=False), np.uint32) & 0xFFFF
    values = _from_bytes(bits.astype("<u2").tobytes(), code, name)
  else:
    values = np.zeros((0,), np.float32)
  values = np.asarray(values, np.float32)
  if values.size == count:
    return values.reshape(shape)
  if values.size == 1 and not t.get(T_CONTENT):  # TF fills the shape with a single typed value
    return np.full(shape, values[0], np.float32)
  if values.size == 0 and count == 0:
    return np.zeros(shape, np.float32)
  raise WeightsError(f"constant {name!r} has shape {shape} ({count} values) but {values.size} values")


def _from_bytes(raw: bytes, code: str, name: str) -> np.ndarray:
  size = 2 if code == "bf16" else np.dtype(code).itemsize
  if len(raw) % size:
    raise WeightsError(f"constant {name!r}: {len(raw)} content bytes is not a multiple of {size}")
  if code == "bf16":
    return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
  return np.frombuffer(raw, code)


# --- writing (tests) ------------------------------------------------------------------------------

def write_graphdef(path: str | os.PathLike, consts: Mapping[str, np.ndarray], *,
                   content: bool = True, extra_nodes: bool = True) -> pathlib.Path:
  """Write a GraphDef of float32 `Const` nodes (plus, by default, a Placeholder and an int Const).

  `content=True` stores values as raw `tensor_content` bytes (what TF's freezing writes);
  `False` uses the typed `float_val` field instead. Returns the path.
  """
  nodes = []
  if extra_nodes:
    nodes.append(_node("input", "Placeholder", [("dtype", pb.field_varint(6, DT_FLOAT))]))
    nodes.append(_const("shape_const", np.array([-1, 1024], np.int32), DT_INT32, content))
  for name, value in consts.items():
    nodes.append(_const(name, np.asarray(value, np.float32), DT_FLOAT, content))
  path = pathlib.Path(path)
  path.write_bytes(b"".join(pb.field_bytes(1, n) for n in nodes))
  return path


def _node(name: str, op: str, attrs: list[tuple[str, bytes]]) -> bytes:
  msg = pb.field_bytes(1, name) + pb.field_bytes(2, op)
  for k, v in attrs:
    msg += pb.field_bytes(5, pb.field_bytes(1, k) + pb.field_bytes(2, v))
  return msg


def _const(name: str, value: np.ndarray, dtype: int, content: bool) -> bytes:
  shape = b"".join(pb.field_bytes(2, pb.field_varint(1, d)) for d in value.shape)
  tensor = pb.field_varint(T_DTYPE, dtype) + pb.field_bytes(T_SHAPE, shape)
  if content:
    tensor += pb.field_bytes(T_CONTENT, value.astype(value.dtype.newbyteorder("<")).tobytes())
  elif dtype == DT_FLOAT:
    tensor += pb.field_packed(T_FLOAT, value.reshape(-1), "<f4")
  else:
    tensor += pb.field_packed_varints(T_INT, value.reshape(-1))
  return _node(name, "Const", [("dtype", pb.field_varint(6, dtype)), ("value", pb.field_bytes(8, tensor))])
