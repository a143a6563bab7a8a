"""Read and write Caffe `.caffemodel` files (binary `NetParameter` protobufs) without Caffe.

Field numbers (BVLC caffe, src/caffe/proto/caffe.proto):

    NetParameter:      name = 1, layers = 2 (V1LayerParameter, deprecated), layer = 100 (LayerParameter)
    LayerParameter:    name = 1, type = 2 (string), blobs = 7
    V1LayerParameter:  layer = 1 (V0LayerParameter), name = 4, type = 5 (enum), blobs = 6
    V0LayerParameter:  name = 1, type = 2 (string), blobs = 50
    BlobProto:         num = 1, channels = 2, height = 3, width = 4 (legacy 4-D shape),
                       data = 5 (packed float), diff = 6, shape = 7 (BlobShape), double_data = 8
    BlobShape:         dim = 1 (packed int64)

`read_caffemodel` returns `{"<layer>/weights": blobs[0], "<layer>/bias": blobs[1]}` with Caffe's
array layouts: convolution weights (out, in, kh, kw), inner-product weights (out, in), biases
(out,). Blobs written with the legacy 4-D shape (num, channels, height, width), as in files from
2014 such as the BVLC model zoo's, are brought to those layouts the way Caffe itself matches them
(`Blob::ShapeEquals`): (1, 1, out, in) -> (out, in) for inner products, (1, 1, 1, n) -> (n,) for
biases. Layers with more than two blobs yield `"<layer>/blob<i>"` for the extra ones.
"""

from __future__ import annotations

import os
import pathlib
from typing import Mapping

import numpy as np

from cv_jax.weights.errors import WeightsError
from cv_jax.weights.formats import protobuf as pb

# NetParameter
NET_NAME, NET_LAYERS_V1, NET_LAYER = 1, 2, 100
# LayerParameter
L_NAME, L_TYPE, L_BLOBS = 1, 2, 7
# V1LayerParameter
V1_V0LAYER, V1_NAME, V1_TYPE, V1_BLOBS = 1, 4, 5, 6
# V0LayerParameter
V0_NAME, V0_TYPE, V0_BLOBS = 1, 2, 50
# BlobProto
B_NUM, B_CHANNELS, B_HEIGHT, B_WIDTH, B_DATA, B_DIFF, B_SHAPE, B_DOUBLE = 1, 2, 3, 4, 5, 6, 7, 8
# BlobShape
S_DIM = 1

# V1LayerParameter.LayerType values for the layers with parameters that matter here.
V1_TYPES = {4: "Convolution", 14: "InnerProduct", 39: "Deconvolution"}
V1_CODES = {v: k for k, v in V1_TYPES.items()}


def read_caffemodel(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Parameter blobs of every layer of a `.caffemodel`, as float32 arrays (see module doc).

  Raises WeightsError on a file that is not a readable NetParameter, or whose blobs are
  inconsistent (data size differing from the shape, duplicate layer names).
  """
  path = pathlib.Path(path)
  data = path.read_bytes()
  try:
    return _read_net(data)
  except pb.ProtobufError as e:
    raise WeightsError(f"{path} is not a valid .caffemodel (corrupt or truncated protobuf: {e})") from None
  except WeightsError as e:
    raise WeightsError(f"{path}: {e}") from None


def _read_net(data: bytes) -> dict[str, np.ndarray]:
  if not data:
    raise WeightsError("empty file")
  layers = []
  for field, wt, value in pb.iter_fields(data):
    if field in (NET_LAYER, NET_LAYERS_V1):
      if wt != pb.LEN:
        raise pb.ProtobufError(f"NetParameter field {field} has wire type {wt}, not a message")
      layers.append(_read_layer(value, v1=(field == NET_LAYERS_V1)))
  if not layers:
    raise WeightsError("no layers found (not a Caffe NetParameter?)")
  out: dict[str, np.ndarray] = {}
  for name, ltype, blobs in layers:
    if not blobs:
      continue
    if not name:
      raise WeightsError(f"a {ltype or 'layer'} with parameters has no name")
    for i, blob in enumerate(blobs):
      k = f"{name}/" + ("weights" if i == 0 else "bias" if i == 1 else f"blob{i}")
      if k in out:
        raise WeightsError(f"duplicate layer name {name!r}")
      out[k] = _normalise(blob, ltype, i, name)
  if not out:
    raise WeightsError("the net has no parameter blobs (a deploy definition, not trained weights?)")
  return out


def _read_layer(buf, v1: bool):
  f = pb.parse(buf)
  if not v1:
    name = pb.last_string(f.get(L_NAME), field="LayerParameter.name")
    ltype = pb.last_string(f.get(L_TYPE), field="LayerParameter.type")
    blobs = [_read_blob(v) for _, v in f.get(L_BLOBS, [])]
    return name, ltype, blobs
  name = pb.last_string(f.get(V1_NAME), field="V1LayerParameter.name")
  ltype = V1_TYPES.get(pb.last_varint(f.get(V1_TYPE), field="V1LayerParameter.type"), "")
  blobs = [_read_blob(v) for _, v in f.get(V1_BLOBS, [])]
  if V1_V0LAYER in f:  # a V0 layer wrapped in a V1 one (pre-2014 files)
    v0 = pb.parse(f[V1_V0LAYER][-1][1])
    name = name or pb.last_string(v0.get(V0_NAME), field="V0LayerParameter.name")
    v0type = pb.last_string(v0.get(V0_TYPE), field="V0LayerParameter.type")
    ltype = ltype or {"conv": "Convolution", "innerproduct": "InnerProduct"}.get(v0type, v0type)
    blobs = blobs or [_read_blob(v) for _, v in v0.get(V0_BLOBS, [])]
  return name, ltype, blobs


def _read_blob(buf) -> tuple[tuple[int, ...] | None, tuple[int, ...], np.ndarray]:
  """(shape from BlobShape or None, legacy 4-D shape, flat float32 data)."""
  f = pb.parse(buf)
  shape = None
  if B_SHAPE in f:
    dims = pb.parse(f[B_SHAPE][-1][1]).get(S_DIM, [])
    shape = tuple(pb.repeated_varint(dims, field="BlobShape.dim"))
  legacy = tuple(pb.last_varint(f.get(k), 0) for k in (B_NUM, B_CHANNELS, B_HEIGHT, B_WIDTH))
  if f.get(B_DATA):
    values = pb.repeated_fixed(f[B_DATA], "<f4", field="BlobProto.data")
  elif f.get(B_DOUBLE):
    values = pb.repeated_fixed(f[B_DOUBLE], "<f8", field="BlobProto.double_data")
  else:
    values = np.zeros((0,), np.float32)
  return shape, legacy, values.astype(np.float32)


def _normalise(blob, ltype: str, index: int, layer: str) -> np.ndarray:
  shape, legacy, values = blob
  if shape is not None:
    if any(d < 0 for d in shape):
      raise WeightsError(f"negative dimension in blob {index} of layer {layer!r}: {shape}")
  else:
    if any(d < 0 for d in legacy):
      raise WeightsError(f"negative dimension in blob {index} of layer {layer!r}: {legacy}")
    num, channels, height, width = legacy
    if index == 1:
      shape = (num * channels * height * width,)
    elif ltype == "InnerProduct" and num == 1 and channels == 1:
      shape = (height, width)
    else:
      shape = legacy
  count = int(np.prod(shape, dtype=np.int64))
  if values.size != count:
    what = "no data" if values.size == 0 else f"{values.size} values"
    raise WeightsError(f"blob {index} of layer {layer!r} has shape {tuple(shape)} "
                       f"({count} values) but {what}")
  return values.reshape(shape)


# --- writing (tests, and exporting to Caffe) ------------------------------------------------------

def write_caffemodel(path: str | os.PathLike, blobs: Mapping[str, np.ndarray], encoding: str = "v2",
                     *, packed: bool = True, net_name: str = "cv_jax") -> pathlib.Path:
  """Write `{"<layer>/weights": ..., "<layer>/bias": ...}` as a binary `.caffemodel`.

  `encoding="v2"`: `layer` (field 100) entries with BlobShape shapes (Caffe since 2015);
  `"v1"`: deprecated `layers` (field 2) entries with legacy 4-D blob shapes, as in older model-zoo
  files (inner-product weights (1, 1, out, in), biases (1, 1, 1, out)). `packed=False` writes the
  float data one element per field (valid protobuf that readers must accept too).
  Layer type: "Convolution" for 4-D weights, else "InnerProduct". Returns the path.
  """
  if encoding not in ("v1", "v2"):
    raise ValueError(f"encoding must be 'v1' or 'v2', not {encoding!r}")
  layers: dict[str, dict[str, np.ndarray]] = {}
  for k, v in blobs.items():
    layer, _, kind = k.rpartition("/")
    if kind not in ("weights", "bias") or not layer:
      raise ValueError(f"blob key {k!r} is not '<layer>/weights' or '<layer>/bias'")
    layers.setdefault(layer, {})[kind] = np.asarray(v, np.float32)
  out = [pb.field_bytes(NET_NAME, net_name)]
  for layer, d in layers.items():
    w = d.get("weights")
    ltype = "Convolution" if w is not None and w.ndim == 4 else "InnerProduct"
    order = [d[k] for k in ("weights", "bias") if k in d]
    if encoding == "v2":
      msg = pb.field_bytes(L_NAME, layer) + pb.field_bytes(L_TYPE, ltype)
      for a in order:
        msg += pb.field_bytes(L_BLOBS, _blob_v2(a, packed))
      out.append(pb.field_bytes(NET_LAYER, msg))
    else:
      msg = pb.field_bytes(V1_NAME, layer) + pb.field_varint(V1_TYPE, V1_CODES[ltype])
      for a in order:
        msg += pb.field_bytes(V1_BLOBS, _blob_v1(a, packed))
      out.append(pb.field_bytes(NET_LAYERS_V1, msg))
  path = pathlib.Path(path)
  path.write_bytes(b"".join(out))
  return path


def _data(a: np.ndarray, packed: bool) -> bytes:
  if packed:
    return pb.field_packed(B_DATA, a.reshape(-1), "<f4")
  return pb.field_unpacked(B_DATA, a.reshape(-1), "<f4")


def _blob_v2(a: np.ndarray, packed: bool) -> bytes:
  shape = pb.field_bytes(B_SHAPE, pb.field_packed_varints(S_DIM, a.shape))
  return shape + _data(a, packed)


def _blob_v1(a: np.ndarray, packed: bool) -> bytes:
  if a.ndim > 4:
    raise ValueError(f"legacy blobs have at most 4 dimensions, got shape {a.shape}")
  dims = (1,) * (4 - a.ndim) + tuple(a.shape)
  head = b"".join(pb.field_varint(f, d) for f, d in zip((B_NUM, B_CHANNELS, B_HEIGHT, B_WIDTH), dims))
  return head + _data(a, packed)
