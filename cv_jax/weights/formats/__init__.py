"""Raw readers (and writers, for tests) of the published weight files, free of torch, caffe and TF.

- `caffe.read_caffemodel(path)`: Caffe `.caffemodel` (V1 `layers` and V2 `layer` encodings).
- `torch_pickle.load_state_dict(path)`: PyTorch `.pth`/`.pt` (zip and legacy formats).
- `tf_graph.read_constants(path)`: frozen TensorFlow GraphDef `.pb` constants.
- `protobuf`: the minimal protocol-buffers wire format the first and last need.

They return arrays in the source's own names and layouts; `cv_jax.weights.mappings` places them.
"""

from cv_jax.weights.formats import caffe, protobuf, tf_graph, torch_pickle

__all__ = ["caffe", "protobuf", "tf_graph", "torch_pickle"]
