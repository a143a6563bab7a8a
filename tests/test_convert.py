"""Weight converters: protobuf wire format, .caffemodel, .pth (zip + legacy), .pb, the CLI,
checkpoints, errors and weight resolution.

References are independent of the readers: the protobuf encoding examples of the official
documentation, the official `protobuf` runtime (messages built from caffe.proto / TF's protos),
`torch.save`/`torch.load`, and the shared BVLC npz.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
import subprocess
import sys
import urllib.error

import chex
import numpy as np
import pytest

from cv_jax import models
from cv_jax import weights as W
from cv_jax.models.spec import SPECS
from cv_jax.weights.formats import caffe, protobuf as pb, tf_graph, torch_pickle

REPO = pathlib.Path(__file__).resolve().parents[1]
IV1 = SPECS["inceptionv1"]


def _env():
  env = dict(os.environ)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  env.setdefault("JAX_PLATFORMS", "cpu")
  return env


def _assert_params_equal(got, want):
  """Same layers, shapes and values, bit for bit (chex tree assertion)."""
  chex.assert_trees_all_equal_shapes(got, want)
  chex.assert_trees_all_equal(got, want)


@pytest.fixture(scope="module")
def iv1_params():
  return W.init_params(IV1, seed=3)


def _lucent_state_dict(params):
  """InceptionV1 params -> Lucent naming, as numpy (OIHW convs, (out, in) dense)."""
  sd = {}
  for layer, (k, _, _) in IV1.conv_layers(False).items():
    kernel, bias = params[layer]["kernel"], params[layer]["bias"]
    if k == 0:
      sd[f"{layer}_pre_activation_matmul.weight"] = kernel.T
      sd[f"{layer}_pre_activation_matmul.bias"] = bias
    else:
      sd[f"{layer}_pre_relu_conv.weight"] = kernel.transpose(3, 2, 0, 1)
      sd[f"{layer}_pre_relu_conv.bias"] = bias
  return sd


def _tf_consts(params):
  out = {}
  for layer, d in params.items():
    out[f"{layer}_w"], out[f"{layer}_b"] = d["kernel"], d["bias"]
  return out


# --- protobuf wire format ------------------------------------------------------------------------

def test_protobuf_documented_encodings():
  # Examples of https://protobuf.dev/programming-guides/encoding/
  assert pb.encode_varint(150) == b"\x96\x01"
  assert pb.field_varint(1, 150) == bytes.fromhex("089601")
  assert pb.field_bytes(2, "testing") == bytes.fromhex("120774657374696e67")
  assert pb.field_packed_varints(4, [3, 270, 86942]) == bytes.fromhex("2206038e029ea705")
  assert pb.encode_varint(-2) == bytes.fromhex("feffffffffffffffff01")
  fields = list(pb.iter_fields(bytes.fromhex("089601120774657374696e672206038e029ea705")))
  assert fields[0] == (1, pb.VARINT, 150)
  assert fields[1][:2] == (2, pb.LEN) and bytes(fields[1][2]) == b"testing"
  assert pb.repeated_varint([fields[2][1:]]) == [3, 270, 86942]
  # unpacked and packed encodings of the same repeated float/int64 field decode alike
  vals = np.array([1.5, -2.25, 3e-8], np.float32)
  for enc in (pb.field_packed(5, vals, "<f4"), pb.field_unpacked(5, vals, "<f4"),
              pb.field_unpacked(5, vals[:1], "<f4") + pb.field_packed(5, vals[1:], "<f4")):
    np.testing.assert_array_equal(pb.repeated_fixed(pb.parse(enc)[5], "<f4"), vals)
  for v in (0, 1, 127, 128, 2**31, 2**63 - 1, -1, -(2**63)):
    got, _ = pb.read_varint(pb.encode_varint(v), 0)
    assert pb.signed64(got) == v
  # a group (wire types 3/4) is skipped
  grouped = pb.key(7, pb.SGROUP) + pb.field_varint(1, 5) + pb.key(7, pb.EGROUP) + pb.field_varint(2, 9)
  assert list(pb.iter_fields(grouped)) == [(2, pb.VARINT, 9)]


@pytest.mark.parametrize("data", [b"\x08", b"\x0a\x05abc", b"\x0d\x01\x02", b"\x0f", b"\x00\x01",
                                  b"\xff" * 11])
def test_protobuf_malformed(data):
  with pytest.raises(pb.ProtobufError):
    list(pb.iter_fields(data))


# --- Caffe --------------------------------------------------------------------------------------

def _small_blobs(rng):
  return {
      "conv1/weights": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
      "conv1/bias": rng.standard_normal(4).astype(np.float32),
      "fc/weights": rng.standard_normal((5, 36)).astype(np.float32),
      "fc/bias": rng.standard_normal(5).astype(np.float32),
  }


@pytest.mark.parametrize("encoding", ["v1", "v2"])
@pytest.mark.parametrize("packed", [True, False])
def test_caffemodel_roundtrip(tmp_path, encoding, packed):
  blobs = _small_blobs(np.random.default_rng(0))
  path = caffe.write_caffemodel(tmp_path / "m.caffemodel", blobs, encoding, packed=packed)
  got = caffe.read_caffemodel(path)
  assert list(got) == list(blobs)
  for k, v in blobs.items():
    assert got[k].dtype == np.float32 and got[k].shape == v.shape, k
    np.testing.assert_array_equal(got[k], v)


def _caffe_classes():
  """BlobShape, BlobProto, LayerParameter, V1LayerParameter, NetParameter from the official
  protobuf runtime, declared with caffe.proto's field numbers (only the fields used here)."""
  pytest.importorskip("google.protobuf")
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
  F = descriptor_pb2.FieldDescriptorProto
  fdp = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")

  def msg(name, fields):
    m = fdp.message_type.add(name=name)
    for fname, num, ftype, label, tname, packed in fields:
      f = m.field.add(name=fname, number=num, type=ftype, label=label)
      if tname:
        f.type_name = tname
      if packed:
        f.options.packed = True
  opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
  msg("BlobShape", [("dim", 1, F.TYPE_INT64, rep, None, True)])
  msg("BlobProto", [("shape", 7, F.TYPE_MESSAGE, opt, ".caffe.BlobShape", False),
                    ("data", 5, F.TYPE_FLOAT, rep, None, True),
                    ("diff", 6, F.TYPE_FLOAT, rep, None, True),
                    ("double_data", 8, F.TYPE_DOUBLE, rep, None, True),
                    ("num", 1, F.TYPE_INT64, opt, None, False),
                    ("channels", 2, F.TYPE_INT64, opt, None, False),
                    ("height", 3, F.TYPE_INT64, opt, None, False),
                    ("width", 4, F.TYPE_INT64, opt, None, False)])
  msg("LayerParameter", [("name", 1, F.TYPE_STRING, opt, None, False),
                         ("type", 2, F.TYPE_STRING, opt, None, False),
                         ("bottom", 3, F.TYPE_STRING, rep, None, False),
                         ("blobs", 7, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False)])
  msg("V1LayerParameter", [("name", 4, F.TYPE_STRING, opt, None, False),
                           ("type", 5, F.TYPE_INT32, opt, None, False),  # enum LayerType on the wire
                           ("blobs", 6, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False),
                           ("blobs_lr", 7, F.TYPE_FLOAT, rep, None, False)])
  msg("NetParameter", [("name", 1, F.TYPE_STRING, opt, None, False),
                       ("layers", 2, F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter", False),
                       ("layer", 100, F.TYPE_MESSAGE, rep, ".caffe.LayerParameter", False)])
  pool = descriptor_pool.DescriptorPool()
  pool.Add(fdp)
  return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{n}"))
          for n in ("BlobProto", "LayerParameter", "V1LayerParameter", "NetParameter")}


def test_caffemodel_against_official_protobuf(tmp_path):
  C = _caffe_classes()
  rng = np.random.default_rng(1)
  conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
  fc = rng.standard_normal((5, 36))  # float64 -> double_data
  bias = rng.standard_normal(5).astype(np.float32)
  # official writer -> our reader: a V2 conv layer, a V1 inner product with legacy dims, a
  # parameter-free layer, and a V2 layer with double_data
  net = C["NetParameter"](name="n")
  l = net.layer.add(name="conv1", type="Convolution", bottom=["data"])
  b = l.blobs.add(); b.shape.dim.extend(conv.shape); b.data.extend(conv.reshape(-1).tolist())
  b = l.blobs.add(); b.shape.dim.extend([4]); b.data.extend([0.5, 1.0, -1.0, 2.0])
  net.layer.add(name="relu1", type="ReLU", bottom=["conv1"])
  v1 = net.layers.add(name="fc", type=14, blobs_lr=[1.0, 2.0])
  b = v1.blobs.add(num=1, channels=1, height=5, width=36); b.data.extend(fc.reshape(-1).tolist())
  b = v1.blobs.add(num=1, channels=1, height=1, width=5); b.data.extend(bias.tolist())
  l = net.layer.add(name="dbl", type="InnerProduct")
  b = l.blobs.add(); b.shape.dim.extend([5, 36]); b.double_data.extend(fc.reshape(-1).tolist())
  path = tmp_path / "official.caffemodel"
  path.write_bytes(net.SerializeToString())
  got = caffe.read_caffemodel(path)
  assert sorted(got) == sorted(["conv1/weights", "conv1/bias", "fc/weights", "fc/bias",
                                "dbl/weights"])
  np.testing.assert_array_equal(got["conv1/weights"], conv)
  np.testing.assert_array_equal(got["conv1/bias"], np.float32([0.5, 1.0, -1.0, 2.0]))
  np.testing.assert_array_equal(got["fc/weights"], fc.astype(np.float32))
  np.testing.assert_array_equal(got["fc/bias"], bias)
  np.testing.assert_array_equal(got["dbl/weights"], fc.astype(np.float32))
  # our writer -> official parser
  for enc in ("v1", "v2"):
    mine = caffe.write_caffemodel(tmp_path / f"mine_{enc}.caffemodel",
                                  {"c/weights": conv, "c/bias": bias[:4], "f/weights": fc}, enc)
    parsed = C["NetParameter"].FromString(mine.read_bytes())
    layers = parsed.layer if enc == "v2" else parsed.layers
    assert [x.name for x in layers] == ["c", "f"]
    if enc == "v2":
      assert layers[0].type == "Convolution" and list(layers[0].blobs[0].shape.dim) == [4, 3, 3, 3]
      assert list(layers[1].blobs[0].shape.dim) == [5, 36]
    else:
      assert layers[0].type == 4 and layers[1].type == 14
      bl = layers[1].blobs[0]
      assert (bl.num, bl.channels, bl.height, bl.width) == (1, 1, 5, 36)
    np.testing.assert_array_equal(np.float32(layers[0].blobs[0].data), conv.reshape(-1))
    np.testing.assert_array_equal(np.float32(layers[0].blobs[1].data), bias[:4])


def test_caffemodel_real_bvlc(tmp_path, bvlc_npz, bvlc_model):
  with np.load(bvlc_npz) as z:
    blobs = {k: z[k] for k in z.files}
  # the official file also holds the auxiliary heads (loss1/, loss2/): random stand-ins here
  rng = np.random.default_rng(0)
  aux = {}
  for head, cin in (("loss1", 512), ("loss2", 528)):
    aux[f"{head}/conv/weights"] = rng.standard_normal((128, cin, 1, 1)).astype(np.float32)
    aux[f"{head}/conv/bias"] = rng.standard_normal(128).astype(np.float32)
    aux[f"{head}/fc/weights"] = rng.standard_normal((1024, 2048)).astype(np.float32)
    aux[f"{head}/fc/bias"] = rng.standard_normal(1024).astype(np.float32)
    aux[f"{head}/classifier/weights"] = rng.standard_normal((1000, 1024)).astype(np.float32)
    aux[f"{head}/classifier/bias"] = rng.standard_normal(1000).astype(np.float32)
  path = caffe.write_caffemodel(tmp_path / "bvlc_googlenet.caffemodel", {**blobs, **aux}, "v2")
  model = models.load("googlenet_bvlc", path)
  _assert_params_equal(model.params(), bvlc_model.params())
  # one forward pass on a real-looking input gives identical logits
  x = np.random.default_rng(1).uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
  a = model(x, layers=("softmax2_pre_activation",))["softmax2_pre_activation"]
  b = bvlc_model(x, layers=("softmax2_pre_activation",))["softmax2_pre_activation"]
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # auxiliary heads: Caffe flattens (c, h, w), our dense layer expects (h, w, c)
  with_aux = W.read_params(path, SPECS["googlenet_bvlc"], aux_heads=True)
  fc = aux["loss1/fc/weights"]  # (out, c*16 + h*4 + w)
  c, h, w, o = 77, 2, 3, 500
  assert with_aux["nn0"]["kernel"][(h * 4 + w) * 128 + c, o] == fc[o, c * 16 + h * 4 + w]
  np.testing.assert_array_equal(with_aux["softmax0"]["kernel"], aux["loss1/classifier/weights"].T)
  np.testing.assert_array_equal(with_aux["head1_bottleneck"]["kernel"][0, 0],
                                aux["loss2/conv/weights"][:, :, 0, 0].T)


# --- PyTorch ------------------------------------------------------------------------------------

@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_pth_lucent_inceptionv1(tmp_path, iv1_params, zipped):
  torch = pytest.importorskip("torch")
  sd = {}
  for i, (k, v) in enumerate(_lucent_state_dict(iv1_params).items()):
    t = torch.from_numpy(np.ascontiguousarray(v))
    if v.ndim == 4 and i % 4 == 0:  # a non-contiguous view: stored HWIO, permuted to OIHW
      hwio = torch.from_numpy(np.ascontiguousarray(v.transpose(2, 3, 1, 0)))
      t = hwio.permute(3, 2, 0, 1)
      assert not t.is_contiguous()
    elif v.ndim == 1 and i % 4 == 1:  # a view with a storage offset into a larger storage
      big = torch.from_numpy(np.concatenate([np.ones(7, np.float32), v, np.ones(3, np.float32)]))
      t = big[7:7 + v.size]
      assert t.storage_offset() == 7
    sd[k] = t
  path = tmp_path / "inception5h.pth"
  torch.save(sd, path, _use_new_zipfile_serialization=zipped)
  assert zipped == __import__("zipfile").is_zipfile(path)
  got = torch_pickle.load_state_dict(path)
  ref = torch.load(path, map_location="cpu", weights_only=True)
  assert list(got) == list(ref)
  for k in ref:
    np.testing.assert_array_equal(got[k], ref[k].numpy(), err_msg=k)
  assert sum(v.size for v in got.values()) == 7_066_380  # Lucent's inception5h.pth
  model = models.load("inceptionv1", path)
  _assert_params_equal(model.params(), iv1_params)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_pth_dtypes_views_and_wrapper(tmp_path, zipped):
  torch = pytest.importorskip("torch")
  g = torch.Generator().manual_seed(0)
  base = torch.randn(6, 8, dtype=torch.float64, generator=g)
  sd = {
      "f64": base, "f64_view": base.t()[1:7:2, 2:],
      "f16": torch.randn(3, 5, generator=g).half(),
      "bf16": torch.randn(9, generator=g).bfloat16(),
      "f32_scalar": torch.tensor(2.5),
      "param": torch.nn.Parameter(torch.randn(4, generator=g)),
      "int": torch.arange(5),
      "empty": torch.zeros(0, 3),
  }
  path = tmp_path / "x.pt"
  torch.save({"state_dict": sd, "epoch": 7, "note": "hi"}, path,
             _use_new_zipfile_serialization=zipped)
  got = torch_pickle.load_state_dict(path)
  assert list(got) == list(sd)
  for k, t in sd.items():
    want = t.detach().float().numpy() if t.is_floating_point() else t.numpy()
    assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
    np.testing.assert_array_equal(got[k], want, err_msg=k)
  # DataParallel-style "module." prefixes are removed
  torch.save({"module.a": torch.ones(2)}, path, _use_new_zipfile_serialization=zipped)
  assert list(torch_pickle.load_state_dict(path)) == ["a"]


def test_pth_reader_without_torch(tmp_path, iv1_params):
  torch = pytest.importorskip("torch")
  sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _lucent_state_dict(iv1_params).items()}
  for zipped in (True, False):
    torch.save(sd, tmp_path / f"w{int(zipped)}.pth", _use_new_zipfile_serialization=zipped)
  code = (
      "import sys; sys.modules['torch'] = None\n"
      "import numpy as np\n"
      "from cv_jax.weights.formats import torch_pickle\n"
      "for z in (0, 1):\n"
      "  sd = torch_pickle.load_state_dict(sys.argv[1] + f'/w{z}.pth')\n"
      "  np.savez(sys.argv[1] + f'/out{z}.npz', **sd)\n"
      "assert sys.modules['torch'] is None\n"
      "try:\n"
      "  import torch\n"
      "  raise SystemExit('torch importable')\n"
      "except ImportError:\n"
      "  print('no torch')\n")
  r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=_env(), capture_output=True,
                     text=True, timeout=120)
  assert r.returncode == 0, r.stderr
  assert "no torch" in r.stdout
  for z in (0, 1):
    with np.load(tmp_path / f"out{z}.npz") as out:
      assert sorted(out.files) == sorted(sd)
      for k, t in sd.items():
        np.testing.assert_array_equal(out[k], t.numpy())


def _op_str(s: str) -> bytes:
  b = s.encode()
  return b"X" + len(b).to_bytes(4, "little") + b


def test_pth_legacy_storage_view(tmp_path):
  """Legacy files may reference a view into a root storage: ("storage", type, root, loc, n,
  (view_key, offset, size)). Modern torch never writes one, so the pickle is hand-assembled."""
  root = np.arange(10, dtype=np.float32) * 1.5
  obj = (b"\x80\x02}" + _op_str("v")
         + b"ctorch._utils\n_rebuild_tensor_v2\n("
         + b"(" + _op_str("storage") + b"ctorch\nFloatStorage\n" + _op_str("root") + _op_str("cpu")
         + b"K\x0a(" + _op_str("view1") + b"K\x03K\x06tt" + b"Q"       # view: elements 3..8
         + b"K\x01K\x02K\x02\x86K\x01K\x02\x86\x89"                    # offset 1, size (2,2), stride (1,2)
         + b"ccollections\nOrderedDict\n)Rt" + b"Rs.")
  path = tmp_path / "view.pth"
  with open(path, "wb") as f:
    for header in (torch_pickle.MAGIC_NUMBER, torch_pickle.PROTOCOL_VERSION, {"little_endian": True}):
      pickle.dump(header, f, protocol=2)
    f.write(obj)
    pickle.dump(["root"], f, protocol=2)
    f.write((10).to_bytes(8, "little") + root.tobytes())
  got = torch_pickle.load_state_dict(path)
  view = root[3:9]
  want = np.lib.stride_tricks.as_strided(view[1:], (2, 2), (4, 8))
  np.testing.assert_array_equal(got["v"], want)
  np.testing.assert_array_equal(got["v"], [[6.0, 9.0], [7.5, 10.5]])
  # the same file cut inside the storage data is reported as truncated
  path.write_bytes(path.read_bytes()[:-5])
  with pytest.raises(W.WeightsError, match="truncated"):
    torch_pickle.load_state_dict(path)


def test_pth_refuses_foreign_globals(tmp_path):
  marker = tmp_path / "pwned"

  class Evil:
    def __reduce__(self):
      return (os.system, (f"touch {marker}",))

  # legacy layout with a malicious object pickle
  path = tmp_path / "evil.pth"
  with open(path, "wb") as f:
    for obj in (torch_pickle.MAGIC_NUMBER, torch_pickle.PROTOCOL_VERSION,
                {"protocol_version": 1001, "little_endian": True}, {"w": Evil()}, []):
      pickle.dump(obj, f, protocol=2)
  with pytest.raises(W.WeightsError, match=r"refusing to load .*(posix|os)\.system"):
    torch_pickle.load_state_dict(path)
  with pytest.raises(W.WeightsError, match="refusing"):
    W.read_params(path, IV1)
  assert not marker.exists()
  # zip layout, pickled nn.Module
  torch = pytest.importorskip("torch")
  torch.save(torch.nn.Linear(2, 3), tmp_path / "module.pth")
  with pytest.raises(W.WeightsError, match=r"torch\.nn\..*state_dict\(\)"):
    torch_pickle.load_state_dict(tmp_path / "module.pth")


# --- TensorFlow ---------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [True, False], ids=["tensor_content", "float_val"])
def test_pb_inceptionv1(tmp_path, iv1_params, content):
  path = tf_graph.write_graphdef(tmp_path / "InceptionV1.pb", _tf_consts(iv1_params), content=content)
  consts = tf_graph.read_constants(path)
  assert "shape_const" not in consts and "input" not in consts  # int Const, Placeholder skipped
  model = models.load("inceptionv1", path)
  _assert_params_equal(model.params(), iv1_params)


def _tf_classes():
  pytest.importorskip("google.protobuf")
  from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
  F = descriptor_pb2.FieldDescriptorProto
  fdp = descriptor_pb2.FileDescriptorProto(name="tf_subset.proto", package="tensorflow", syntax="proto3")
  opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED

  def msg(parent, name, fields):
    m = parent.add(name=name)
    for fname, num, ftype, label, tname in fields:
      f = m.field.add(name=fname, number=num, type=ftype, label=label, json_name=fname)
      if tname:
        f.type_name = tname
    return m
  shape = msg(fdp.message_type, "TensorShapeProto",
              [("dim", 2, F.TYPE_MESSAGE, rep, ".tensorflow.TensorShapeProto.Dim"),
               ("unknown_rank", 3, F.TYPE_BOOL, opt, None)])
  msg(shape.nested_type, "Dim", [("size", 1, F.TYPE_INT64, opt, None), ("name", 2, F.TYPE_STRING, opt, None)])
  msg(fdp.message_type, "TensorProto",
      [("dtype", 1, F.TYPE_INT32, opt, None),
       ("tensor_shape", 2, F.TYPE_MESSAGE, opt, ".tensorflow.TensorShapeProto"),
       ("tensor_content", 4, F.TYPE_BYTES, opt, None), ("float_val", 5, F.TYPE_FLOAT, rep, None),
       ("double_val", 6, F.TYPE_DOUBLE, rep, None), ("int_val", 7, F.TYPE_INT32, rep, None),
       ("half_val", 13, F.TYPE_INT32, rep, None)])
  msg(fdp.message_type, "AttrValue", [("type", 6, F.TYPE_INT32, opt, None),
                                      ("tensor", 8, F.TYPE_MESSAGE, opt, ".tensorflow.TensorProto")])
  node = msg(fdp.message_type, "NodeDef",
             [("name", 1, F.TYPE_STRING, opt, None), ("op", 2, F.TYPE_STRING, opt, None),
              ("input", 3, F.TYPE_STRING, rep, None),
              ("attr", 5, F.TYPE_MESSAGE, rep, ".tensorflow.NodeDef.AttrEntry")])
  entry = msg(node.nested_type, "AttrEntry", [("key", 1, F.TYPE_STRING, opt, None),
                                              ("value", 2, F.TYPE_MESSAGE, opt, ".tensorflow.AttrValue")])
  entry.options.map_entry = True
  msg(fdp.message_type, "GraphDef", [("node", 1, F.TYPE_MESSAGE, rep, ".tensorflow.NodeDef")])
  pool = descriptor_pool.DescriptorPool()
  pool.Add(fdp)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.GraphDef"))


def test_pb_against_official_protobuf(tmp_path):
  GraphDef = _tf_classes()
  rng = np.random.default_rng(2)
  w = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
  b = rng.standard_normal(4)
  h = rng.standard_normal((2, 3)).astype(np.float16)
  g = GraphDef()
  n = g.node.add(name="input", op="Placeholder"); n.attr["dtype"].type = 1
  n = g.node.add(name="c_w", op="Const"); n.attr["dtype"].type = 1
  t = n.attr["value"].tensor; t.dtype = 1; t.tensor_content = w.tobytes()
  for d in w.shape:
    t.tensor_shape.dim.add(size=d)
  n = g.node.add(name="c_b", op="Const"); t = n.attr["value"].tensor; t.dtype = 2
  t.tensor_shape.dim.add(size=4); t.double_val.extend(b.tolist())
  n = g.node.add(name="fill", op="Const"); t = n.attr["value"].tensor; t.dtype = 1
  t.tensor_shape.dim.add(size=2); t.tensor_shape.dim.add(size=2); t.float_val.append(0.25)
  n = g.node.add(name="half", op="Const"); t = n.attr["value"].tensor; t.dtype = 19
  for d in h.shape:
    t.tensor_shape.dim.add(size=d)
  t.half_val.extend(h.view(np.uint16).reshape(-1).tolist())
  n = g.node.add(name="ints", op="Const"); t = n.attr["value"].tensor; t.dtype = 3
  t.int_val.extend([1, 2])
  n = g.node.add(name="relu", op="Relu", input=["c_w"])
  path = tmp_path / "g.pb"
  path.write_bytes(g.SerializeToString())
  got = tf_graph.read_constants(path)
  assert sorted(got) == ["c_b", "c_w", "fill", "half"]
  np.testing.assert_array_equal(got["c_w"], w)
  np.testing.assert_array_equal(got["c_b"], b.astype(np.float32))
  np.testing.assert_array_equal(got["fill"], np.full((2, 2), 0.25, np.float32))
  np.testing.assert_array_equal(got["half"], h.astype(np.float32))
  # our writer -> official parser
  mine = GraphDef.FromString(tf_graph.write_graphdef(tmp_path / "m.pb", {"c_w": w}).read_bytes())
  node = [x for x in mine.node if x.name == "c_w"][0]
  assert node.op == "Const" and node.attr["dtype"].type == 1
  tensor = node.attr["value"].tensor
  assert [d.size for d in tensor.tensor_shape.dim] == list(w.shape)
  np.testing.assert_array_equal(np.frombuffer(tensor.tensor_content, "<f4").reshape(w.shape), w)


# --- errors -------------------------------------------------------------------------------------

def test_unknown_file_type(tmp_path):
  p = tmp_path / "weights.h5"
  p.write_bytes(b"\x89HDF")
  with pytest.raises(W.WeightsError, match=r"unknown weights file type '\.h5'.*\.caffemodel"):
    models.load("inceptionv1", p)
  with pytest.raises(W.WeightsError, match="not found"):
    models.load("inceptionv1", tmp_path / "nope.pth")


def test_missing_extra_shape_nonfinite(tmp_path, iv1_params):
  consts = _tf_consts(iv1_params)
  # missing
  c = {k: v for k, v in consts.items() if not k.startswith("mixed4a_1x1")}
  p = tf_graph.write_graphdef(tmp_path / "missing.pb", c)
  with pytest.raises(W.WeightsError, match=r"missing tensors: mixed4a_1x1/kernel, mixed4a_1x1/bias"):
    models.load("inceptionv1", p)
  # extra (Lucent naming)
  sd = _lucent_state_dict(iv1_params)
  sd["mixed9z_pre_relu_conv.weight"] = np.zeros((2, 2, 1, 1), np.float32)
  sd["num_batches_tracked"] = np.zeros((), np.float32)
  torch = pytest.importorskip("torch")
  p = tmp_path / "extra.pth"
  torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, p)
  with pytest.raises(W.WeightsError, match=r"unexpected tensors: .*num_batches_tracked|mixed9z"):
    models.load("inceptionv1", p)
  # extra (Caffe naming)
  blobs = {"conv1/7x7_s2/weights": np.zeros((64, 3, 7, 7), np.float32), "bogus/weights": np.zeros(3)}
  p = caffe.write_caffemodel(tmp_path / "extra.caffemodel", blobs)
  with pytest.raises(W.WeightsError, match=r"unexpected tensors: bogus/weights"):
    models.load("googlenet_bvlc", p)
  # shape mismatch
  c = dict(consts, conv2d0_w=np.zeros((7, 7, 3, 32), np.float32))
  p = tf_graph.write_graphdef(tmp_path / "shape.pb", c)
  with pytest.raises(W.WeightsError, match=r"shape mismatch for conv2d0/kernel: expected \(7, 7, 3, 64\), "
                                           r"found \(7, 7, 3, 32\)"):
    models.load("inceptionv1", p)
  # NaN / Inf
  for bad in (np.nan, np.inf):
    c = dict(consts)
    c["mixed5b_5x5_b"] = c["mixed5b_5x5_b"].copy()
    c["mixed5b_5x5_b"][3] = bad
    p = tf_graph.write_graphdef(tmp_path / "nan.pb", c)
    with pytest.raises(W.WeightsError, match=r"non-finite values \(NaN/Inf\) in mixed5b_5x5/bias"):
      models.load("inceptionv1", p)


def test_truncated_and_corrupt_files(tmp_path, iv1_params):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  files = {}
  blobs = _small_blobs(rng)
  files["m.caffemodel"] = caffe.write_caffemodel(tmp_path / "full.caffemodel", blobs).read_bytes()
  files["g.pb"] = tf_graph.write_graphdef(tmp_path / "full.pb", {"x_w": np.ones((3, 3))}).read_bytes()
  sd = {"a": torch.randn(50, 50)}
  for z in (True, False):
    torch.save(sd, tmp_path / "full.pth", _use_new_zipfile_serialization=z)
    files[f"{'zip' if z else 'legacy'}.pth"] = (tmp_path / "full.pth").read_bytes()
  readers = {".caffemodel": caffe.read_caffemodel, ".pb": tf_graph.read_constants,
             ".pth": torch_pickle.load_state_dict}
  for name, data in files.items():
    suffix = pathlib.Path(name).suffix
    cases = {"empty": b"", "half": data[: len(data) // 2], "cut": data[:-7],
             "garbage": rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()}
    for case, content in cases.items():
      p = tmp_path / f"{case}_{name}"
      p.write_bytes(content)
      with pytest.raises(W.WeightsError) as e:
        readers[suffix](p)
      assert str(p) in str(e.value), (name, case, str(e.value))
      assert "Traceback" not in str(e.value)
      # and through the model loader, as one WeightsError too
      with pytest.raises(W.WeightsError):
        models.load("googlenet_bvlc" if suffix == ".caffemodel" else "inceptionv1", p)


# --- CLI and checkpoints ------------------------------------------------------------------------

def _cli(*args):
  return subprocess.run([sys.executable, "-m", "cv_jax.weights", *args], env=_env(),
                        capture_output=True, text=True, timeout=180)


def test_cli_roundtrip_and_failures(tmp_path, iv1_params):
  src = tf_graph.write_graphdef(tmp_path / "InceptionV1.pb", _tf_consts(iv1_params))
  out = tmp_path / "ckpt" / "inceptionv1"
  r = _cli("--model=inceptionv1", f"--input={src}", f"--output={out}")
  assert r.returncode == 0, r.stderr
  lines = r.stdout.strip().splitlines()
  assert len(lines) == 1
  assert "7,066,380 parameters" in lines[0]
  assert hashlib.sha256(src.read_bytes()).hexdigest() in lines[0]
  _assert_params_equal(models.load("inceptionv1", out).params(), iv1_params)
  # the checkpoint converts again (directory input) and records its source
  assert "sha256=" in (out / "cv_jax.json").read_text()
  # failures: one line on stderr, non-zero exit, nothing left behind
  bad = tmp_path / "bad.pb"
  bad.write_bytes(src.read_bytes()[:100_000])
  before = sorted(p.name for p in tmp_path.iterdir())
  for args, msg in [
      (["--model=inceptionv1", f"--input={bad}", f"--output={tmp_path / 'o1'}"], "not a valid GraphDef"),
      (["--model=inceptionv1", f"--input={src}", f"--output={out}"], "already exists")]:
    r = _cli(*args)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cv-jax convert: error: ") and msg in err[0], r.stderr
  # the same function in-process, for the other failures
  from cv_jax.weights.convert import convert
  for args, msg in [(("googlenet_bvlc", src, tmp_path / "o2"), "shape mismatch for mixed4a_3x3/kernel"),
                    (("inceptionv1", tmp_path / "x.onnx", tmp_path / "o3"), "not found"),
                    (("inceptionv1", bad, tmp_path / "new" / "o4"), "not a valid GraphDef"),
                    (("resnet50", src, tmp_path / "o5"), "unknown model")]:
    with pytest.raises(W.WeightsError, match=msg):
      convert(*args)
  assert sorted(p.name for p in tmp_path.iterdir()) == before  # no partial checkpoint / temp dir
  assert sorted(p.name for p in out.parent.iterdir()) == ["inceptionv1"]


def test_convert_function_bvlc_caffemodel(tmp_path, bvlc_npz, bvlc_model):
  from cv_jax.weights.convert import convert, file_sha256
  assert file_sha256(bvlc_npz) == "5a6b45b895b9abc868bb60420bf653c359da153e264018c6bd72fa567b426a33"
  with np.load(bvlc_npz) as z:
    path = caffe.write_caffemodel(tmp_path / "b.caffemodel", {k: z[k] for k in z.files}, "v1")
  line = convert("googlenet_bvlc", path, tmp_path / "ck")
  assert "6,998,552 parameters in 116 tensors" in line  # shared README
  _assert_params_equal(models.load("googlenet_bvlc", tmp_path / "ck").params(), bvlc_model.params())
  with pytest.raises(W.WeightsError, match="holds weights for 'googlenet_bvlc'"):
    models.load("inceptionv1", tmp_path / "ck")


# --- weight resolution --------------------------------------------------------------------------

def test_resolve_from_cv_jax_home(tmp_path, monkeypatch, iv1_params):
  monkeypatch.setenv("CV_JAX_HOME", str(tmp_path))

  def no_network(*a, **k):
    raise AssertionError("no download expected")
  monkeypatch.setattr("urllib.request.urlopen", no_network)
  (tmp_path / "inceptionv1").mkdir()
  f = tf_graph.write_graphdef(tmp_path / "inceptionv1" / "InceptionV1.pb", _tf_consts(iv1_params))
  assert W.resolve("inceptionv1") == f
  _assert_params_equal(models.load("inceptionv1").params(), iv1_params)


def test_resolve_download_failure_says_how(tmp_path, monkeypatch):
  monkeypatch.setenv("CV_JAX_HOME", str(tmp_path))
  monkeypatch.setenv("CV_JAX_SHARED", "")
  monkeypatch.delenv("CV_JAX_MIRROR", raising=False)
  calls = []

  def offline(url, *a, **k):
    calls.append(getattr(url, "full_url", url))
    raise urllib.error.URLError("network unreachable")
  monkeypatch.setattr("urllib.request.urlopen", offline)
  with pytest.raises(W.WeightsError) as e:
    models.load("inceptionv1")
  msg = str(e.value)
  assert "could not download" in msg and "weights=PATH" in msg and str(tmp_path / "inceptionv1") in msg
  # googlenet_bvlc goes through cv_jax.assets (tests/test_assets.py): one line with size and digest.
  with pytest.raises(W.WeightsError) as e:
    models.load("googlenet_bvlc")
  msg = str(e.value)
  assert "network unreachable" in msg and "53,533,754 bytes, sha1 405fc5acd08a3bb1" in msg
  assert str(tmp_path / "googlenet_bvlc" / "bvlc_googlenet.caffemodel") in msg
  for name in ("inceptionv1", "googlenet_bvlc"):
    assert not list((tmp_path / name).glob("*"))  # nothing arrived, nothing left
  assert calls == [W.OFFICIAL["inceptionv1"]["url"],
                   "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"]
  with pytest.raises(W.WeightsError, match="weights=PATH"):
    models.load("inceptionv1", download=False)


def test_download_interrupted_leaves_nothing(tmp_path, monkeypatch):
  monkeypatch.setenv("CV_JAX_HOME", str(tmp_path))
  monkeypatch.setenv("CV_JAX_SHARED", "")

  class Broken:
    def __init__(self):
      self.n = 0

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      return False

    def read(self, size):
      self.n += 1
      if self.n > 2:
        raise ConnectionResetError("connection reset by peer")
      return b"x" * 1000
  monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: Broken())
  with pytest.raises(W.WeightsError, match=r"could not download .*ConnectionResetError.*weights=PATH"):
    W.resolve("inceptionv1")
  assert not list((tmp_path / "inceptionv1").glob("*"))
