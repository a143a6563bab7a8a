"""Read PyTorch `.pth`/`.pt` state dicts without importing torch.

Both serialisation formats of `torch.save` are understood:

- zip (torch >= 1.6 default): a zip archive `<name>/data.pkl` (the pickled object), tensors'
  storages as raw little-endian bytes in `<name>/data/<key>` (and `<name>/byteorder`);
- legacy (`_use_new_zipfile_serialization=False`, and files from torch < 1.6): a stream of
  pickles -- magic number, protocol version (1001), sys-info dict, the object, the list of
  storage keys -- followed, for each key, by an int64 element count and the raw storage bytes.

In the object pickle a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, hooks[, metadata])`, the storage a persistent id `("storage", torch.FloatStorage,
key, location, numel[, view])`. Unpickling is restricted: only the few globals a state dict needs
are resolved (to local stand-ins, never to torch); any other global -- e.g. a pickled
`nn.Module`, or arbitrary code -- is refused with a WeightsError before anything runs.
"""

from __future__ import annotations

import collections
import io
import os
import pathlib
import pickle
import struct
import zipfile
from typing import Any, Callable

import numpy as np

from cv_jax.weights.errors import WeightsError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# Storage class name -> numpy dtype (little-endian as stored). BFloat16 is handled separately.
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?", "UntypedStorage": "u1",
}
# torch dtype objects (pickled as GLOBAL 'torch float32', used by _rebuild_tensor_v3)
_TORCH_DTYPES = {"float32": "<f4", "float": "<f4", "float64": "<f8", "double": "<f8",
                 "float16": "<f2", "half": "<f2", "bfloat16": "bf16", "int64": "<i8", "long": "<i8",
                 "int32": "<i4", "int": "<i4", "int16": "<i2", "int8": "i1", "uint8": "u1",
                 "bool": "?"}


class _StorageType:
  """Stand-in for `torch.FloatStorage` etc.: only remembers the element dtype."""

  def __init__(self, name: str, dtype: str):
    self.name, self.dtype = name, dtype

  def __repr__(self) -> str:
    return f"torch.{self.name}"


class _Dtype:
  """Stand-in for a `torch.dtype` object."""

  def __init__(self, dtype: str):
    self.dtype = dtype


class _Storage:
  """A storage whose bytes are filled in later (legacy) or read on demand (zip)."""

  def __init__(self, dtype: str, numel: int, key: str, loader: Callable[[], bytes] | None = None):
    self.dtype, self.numel, self.key = dtype, int(numel), key
    self._loader = loader
    self._raw: bytes | None = None
    self.base: tuple[_Storage, int] | None = None  # (root, element offset) for legacy views

  @property
  def itemsize(self) -> int:
    return 2 if self.dtype == "bf16" else np.dtype(self.dtype).itemsize

  def raw(self) -> bytes:
    if self.base is not None:
      root, offset = self.base
      b = root.raw()
      return b[offset * self.itemsize:(offset + self.numel) * self.itemsize]
    if self._raw is None:
      if self._loader is None:
        raise WeightsError(f"storage {self.key!r} has no data in the file (truncated?)")
      self._raw = self._loader()
    return self._raw

  def array(self) -> np.ndarray:
    raw = self.raw()
    if len(raw) < self.numel * self.itemsize:
      raise WeightsError(f"storage {self.key!r}: expected {self.numel * self.itemsize} bytes, "
                         f"found {len(raw)} (truncated file?)")
    if self.dtype == "bf16":
      bits = np.frombuffer(raw, "<u2", count=self.numel).astype(np.uint32) << 16
      return bits.view(np.float32)
    return np.frombuffer(raw, self.dtype, count=self.numel)


class _Tensor:
  """A tensor whose values are gathered once the storages hold their bytes."""

  def __init__(self, storage, offset, size, stride, dtype: str | None = None, negate: bool = False):
    if not isinstance(storage, _Storage):
      raise WeightsError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
    self.storage, self.offset = storage, int(offset)
    self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    self.dtype, self.negate = dtype, negate
    if len(self.size) != len(self.stride):
      raise WeightsError(f"tensor with size {self.size} but stride {self.stride}")

  def numpy(self) -> np.ndarray:
    base = self.storage.array()
    if self.dtype is not None and self.dtype != self.storage.dtype:  # v3 on an untyped storage
      if self.dtype == "bf16":
        base = (np.frombuffer(base.tobytes(), "<u2").astype(np.uint32) << 16).view(np.float32)
      else:
        base = np.frombuffer(base.tobytes(), self.dtype)
    if any(s == 0 for s in self.size):
      return np.zeros(self.size, base.dtype)
    if self.offset < 0 or any(s < 0 for s in self.stride):
      raise WeightsError(f"invalid tensor view (offset {self.offset}, stride {self.stride})")
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if last >= base.size:
      raise WeightsError(f"tensor of size {self.size} (offset {self.offset}, stride {self.stride}) "
                         f"reaches past its storage of {base.size} elements")
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], shape=self.size, strides=[s * base.itemsize for s in self.stride],
        writeable=False)
    out = np.array(view)  # copy: contiguous, owns its memory
    return -out if self.negate else out


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  return _Tensor(storage, storage_offset, size, stride, negate=bool(metadata and metadata.get("neg")))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
  if not isinstance(dtype, _Dtype):
    raise WeightsError("tensor with an unknown dtype")
  return _Tensor(storage, storage_offset, size, stride, dtype=dtype.dtype,
                 negate=bool(metadata and metadata.get("neg")))


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
  return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
_ALLOWED.update({("torch", n): _StorageType(n, d) for n, d in _STORAGE_DTYPES.items()})
_ALLOWED[("torch.storage", "UntypedStorage")] = _StorageType("UntypedStorage", "u1")
_ALLOWED.update({("torch", n): _Dtype(d) for n, d in _TORCH_DTYPES.items()})


class _Unpickler(pickle.Unpickler):
  """Resolves only the allowed globals; storages via `persistent_load`."""

  def __init__(self, file, storage_factory: Callable[[tuple], _Storage] | None, source: str):
    super().__init__(file, encoding="utf-8")
    self._factory = storage_factory
    self._source = source

  def find_class(self, module: str, name: str):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    hint = (" (the file holds a pickled model object; save `model.state_dict()` instead)"
            if module.startswith(("torch.nn", "__main__")) else "")
    raise WeightsError(f"refusing to load {self._source}: it references the Python object "
                       f"{module}.{name}, and only tensors in plain dicts are allowed{hint}")

  def persistent_load(self, pid):
    if self._factory is None:
      raise WeightsError(f"{self._source}: unexpected persistent id in a header pickle")
    if not isinstance(pid, tuple) or not pid:
      raise WeightsError(f"{self._source}: malformed persistent id {pid!r}")
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if kind != "storage":
      raise WeightsError(f"refusing to load {self._source}: persistent object of kind {kind!r} "
                         "(only tensor storages are allowed)")
    return self._factory(pid[1:])


def _storage_args(data: tuple, source: str):
  if len(data) < 4 or not isinstance(data[0], _StorageType):
    raise WeightsError(f"{source}: malformed storage reference {data!r}")
  key = data[1].decode("ascii") if isinstance(data[1], bytes) else str(data[1])
  numel = data[3]
  if not isinstance(numel, int) or numel < 0:
    raise WeightsError(f"{source}: storage {key!r} has an invalid size {numel!r}")
  return data[0], key, numel


# --- the two container formats --------------------------------------------------------------------

def _load_zip(path: pathlib.Path) -> Any:
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if not pkl:
      raise WeightsError(f"{path} is a zip file but not a PyTorch checkpoint (no <name>/data.pkl)")
    prefix = pkl[0][: -len("data.pkl")]
    order = "little"
    if prefix + "byteorder" in names:
      order = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
      if order not in ("little", "big"):
        raise WeightsError(f"{path}: unknown byte order {order!r}")
    storages: dict[str, _Storage] = {}

    def factory(data):
      stype, key, numel = _storage_args(data, str(path))
      if key not in storages:
        name = f"{prefix}data/{key}"
        if name not in names:
          raise WeightsError(f"{path}: storage {key!r} is missing from the archive")

        def loader(name=name):
          raw = zf.read(name)
          if order == "big":
            raw = _byteswap(raw, storages[key].itemsize)
          return raw
        storages[key] = _Storage(stype.dtype, numel, key, loader)
      return storages[key]

    obj = _Unpickler(io.BytesIO(zf.read(pkl[0])), factory, str(path)).load()
    return _materialise(obj, str(path))


def _byteswap(raw: bytes, itemsize: int) -> bytes:
  if itemsize == 1:
    return raw
  return np.frombuffer(raw, f">u{itemsize}").astype(f"<u{itemsize}").tobytes()


def _load_legacy(path: pathlib.Path) -> Any:
  src = str(path)
  with open(path, "rb") as f:
    def header():
      return _Unpickler(f, None, src).load()
    magic = header()
    if magic != MAGIC_NUMBER:
      raise WeightsError(f"{path} is not a PyTorch file (bad magic number)")
    proto = header()
    if proto != PROTOCOL_VERSION:
      raise WeightsError(f"{path}: unsupported PyTorch legacy protocol version {proto!r}")
    sys_info = header()
    little = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
    roots: dict[str, _Storage] = {}
    views: dict[str, _Storage] = {}

    def factory(data):
      stype, key, numel = _storage_args(data, src)
      if key not in roots:
        roots[key] = _Storage(stype.dtype, numel, key)
      view = data[4] if len(data) > 4 else None
      if view is None:
        return roots[key]
      vkey, offset, vsize = view
      vkey = vkey.decode("ascii") if isinstance(vkey, bytes) else str(vkey)
      if vkey not in views:
        v = _Storage(stype.dtype, vsize, vkey)
        v.base = (roots[key], int(offset))
        views[vkey] = v
      return views[vkey]

    obj = _Unpickler(f, factory, src).load()
    keys = _Unpickler(f, None, src).load()
    if not isinstance(keys, list):
      raise WeightsError(f"{path}: malformed storage key list")
    for key in keys:
      key = key.decode("ascii") if isinstance(key, bytes) else str(key)
      if key not in roots:
        raise WeightsError(f"{path}: data for unknown storage {key!r}")
      st = roots[key]
      head = f.read(8)
      if len(head) != 8:
        raise WeightsError(f"{path} is truncated (storage {key!r} missing)")
      (numel,) = struct.unpack("<q" if little else ">q", head)
      if numel != st.numel:
        raise WeightsError(f"{path}: storage {key!r} holds {numel} elements, expected {st.numel}")
      nbytes = numel * st.itemsize
      raw = f.read(nbytes)
      if len(raw) != nbytes:
        raise WeightsError(f"{path} is truncated (storage {key!r}: {len(raw)} of {nbytes} bytes)")
      st._raw = raw if little else _byteswap(raw, st.itemsize)
    missing = sorted(k for k in roots if roots[k]._raw is None)
    if missing:
      raise WeightsError(f"{path} is truncated or corrupt: no data for storages {missing[:5]}")
  return _materialise(obj, src)


def _materialise(obj: Any, source: str) -> Any:
  """Replace every `_Tensor` in (nested) dicts/lists/tuples with a numpy array."""
  if isinstance(obj, _Tensor):
    return obj.numpy()
  if isinstance(obj, dict):
    return type(obj)((k, _materialise(v, source)) for k, v in obj.items()) \
        if isinstance(obj, collections.OrderedDict) else {k: _materialise(v, source) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(v, source) for v in obj)
  return obj


def load_object(path: str | os.PathLike) -> Any:
  """Unpickle a `torch.save` file (either format) with tensors as numpy arrays (torch-free)."""
  path = pathlib.Path(path)
  with open(path, "rb") as f:
    head = f.read(4)
  if not head:
    raise WeightsError(f"{path} is empty")
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path)
    if head[:1] == b"\x80":
      return _load_legacy(path)
  except WeightsError:
    raise
  except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError, KeyError,
          IndexError, AttributeError, struct.error, UnicodeDecodeError) as e:
    raise WeightsError(f"{path} is not a readable PyTorch file (corrupt or truncated: "
                       f"{type(e).__name__}: {e})") from None
  raise WeightsError(f"{path} is not a PyTorch file (neither a zip archive nor a legacy pickle; "
                     "tar files from torch < 0.4 are not supported)")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The state dict in a `.pth`/`.pt` file as `{key: float32 array}` (no torch needed).

  Accepts a top-level dict of tensors, or a checkpoint dict with the tensors under
  "state_dict" (also "model_state_dict"); a "module." prefix on every key (DataParallel) is
  removed. Floating tensors (float16/bfloat16/float64) become float32; integer tensors keep
  their dtype. Raises WeightsError for anything else.
  """
  obj = load_object(path)
  if isinstance(obj, dict):
    for wrapper in ("state_dict", "model_state_dict"):
      if isinstance(obj.get(wrapper), dict):
        obj = obj[wrapper]
        break
  if not isinstance(obj, dict):
    raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
  out: dict[str, np.ndarray] = {}
  bad = []
  for k, v in obj.items():
    if not isinstance(v, np.ndarray):
      bad.append(str(k))
      continue
    out[str(k)] = v.astype(np.float32) if v.dtype.kind == "f" else v
  if bad:
    raise WeightsError(f"{path}: state dict entries that are not tensors: {', '.join(bad[:10])}")
  if out and all(k.startswith("module.") for k in out):
    out = {k[len("module."):]: v for k, v in out.items()}
  return out
