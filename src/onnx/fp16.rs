//! A float32 model rewritten to compute in float16 for CUDA, where half-precision kernels run about twice as
//! fast: weights and constants become float16, a Cast after each float input and before each float output keeps
//! the model's interface float32, so nothing outside the session changes.

use std::collections::HashSet;
use std::path::Path;

use prost::Message;

use super::proto::{
    ATTRIBUTE_INT, AttributeProto, FLOAT, FLOAT16, ModelProto, NodeProto, TensorProto,
};
use crate::error::{Error, Result};

/// Ops whose float inputs must stay float32 or whose int8 arithmetic has no float16 form; a model with one is
/// refused rather than half-converted.
const UNCONVERTIBLE: &[&str] = &[
    "DynamicQuantizeLinear",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
    "Resize",
    "Upsample",
    "Range",
    "If",
    "Loop",
    "Scan",
];

/// The model in `bytes` (the file at `path`, for errors) with float16 arithmetic and float32 inputs and outputs.
pub(crate) fn to_fp16(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut model = ModelProto::decode(bytes)
        .map_err(|e| Error::model(path, format!("not an ONNX model: {e}")))?;
    let graph = model
        .graph
        .as_mut()
        .ok_or_else(|| Error::model(path, "the model has no graph"))?;
    if let Some(node) = graph
        .node
        .iter()
        .find(|n| UNCONVERTIBLE.contains(&n.op_type.as_str()) || has_subgraph(n))
    {
        return Err(Error::parameter(
            "precision",
            format!(
                "fp16: {} has {} nodes, which headstart does not convert to float16 (use fp32 for this model)",
                path.display(),
                node.op_type
            ),
        ));
    }
    for tensor in graph.initializer.iter_mut() {
        convert_tensor(tensor);
    }
    for node in graph.node.iter_mut() {
        for attribute in node.attribute.iter_mut() {
            if let Some(tensor) = attribute.t.as_mut() {
                convert_tensor(tensor);
            }
            if node.op_type == "Cast" && attribute.name == "to" && attribute.i == i64::from(FLOAT) {
                attribute.i = i64::from(FLOAT16);
            }
        }
        if node.op_type == "Constant"
            && node
                .attribute
                .iter()
                .any(|a| a.name == "value_float" || a.name == "value_floats")
        {
            return Err(Error::parameter(
                "precision",
                format!(
                    "fp16: {} has a float Constant headstart does not convert (use fp32 for this model)",
                    path.display()
                ),
            ));
        }
    }

    let initializers: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut casts = Vec::new();
    for input in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(&i.name))
    {
        if elem_type(input) != Some(FLOAT) {
            continue;
        }
        let half = format!("{}__fp16", input.name);
        for node in graph.node.iter_mut() {
            rename(&mut node.input, &input.name, &half);
        }
        casts.push(cast(&input.name, &half, FLOAT16));
    }
    // Outputs: whatever makes them now makes a float16 tensor; a Cast gives back the float32 one. Outputs
    // without a type (taps added by name) are features, so float.
    let mut tails = Vec::new();
    for output in &graph.output {
        if !matches!(elem_type(output), None | Some(FLOAT)) {
            continue;
        }
        let half = format!("{}__fp16", output.name);
        for node in graph.node.iter_mut() {
            rename(&mut node.output, &output.name, &half);
            rename(&mut node.input, &output.name, &half);
        }
        tails.push(cast(&half, &output.name, FLOAT));
    }
    casts.append(&mut graph.node);
    casts.extend(tails);
    graph.node = casts;
    Ok(model.encode_to_vec())
}

fn has_subgraph(node: &NodeProto) -> bool {
    node.attribute
        .iter()
        .any(|a| a.g.is_some() || !a.graphs.is_empty())
}

fn elem_type(value: &super::proto::ValueInfoProto) -> Option<i32> {
    value
        .r#type
        .as_ref()?
        .tensor_type
        .as_ref()
        .map(|t| t.elem_type)
}

fn rename(names: &mut [String], from: &str, to: &str) {
    for name in names.iter_mut().filter(|n| *n == from) {
        *name = to.to_string();
    }
}

fn cast(from: &str, to: &str, elem_type: i32) -> NodeProto {
    let mut node = NodeProto::new("Cast", &[from], &[to]);
    node.attribute.push(AttributeProto {
        name: "to".into(),
        r#type: ATTRIBUTE_INT,
        i: i64::from(elem_type),
        ..Default::default()
    });
    node
}

/// A float32 tensor's values as float16 (rounded to nearest), in raw little-endian bytes.
fn convert_tensor(tensor: &mut TensorProto) {
    if tensor.data_type != FLOAT {
        return;
    }
    let values: Vec<f32> = if tensor.raw_data.is_empty() {
        std::mem::take(&mut tensor.float_data)
    } else {
        tensor
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    tensor.raw_data = values
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    tensor.float_data.clear();
    tensor.data_type = FLOAT16;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{GraphProto, ValueInfoProto};

    fn conv_model() -> ModelProto {
        let graph = GraphProto {
            name: "g".into(),
            node: vec![
                NodeProto::new("Conv", &["x", "w"], &["c"]),
                NodeProto::new("Clip", &["c", "lo", "hi"], &["y"]),
            ],
            initializer: vec![
                TensorProto::floats("w", &[1, 1, 1, 1], &[0.5]),
                TensorProto::floats("lo", &[], &[0.0]),
                TensorProto::floats("hi", &[], &[6.0]),
            ],
            input: vec![ValueInfoProto::tensor(
                "x",
                FLOAT,
                &[None, Some(1), Some(2), Some(2)],
            )],
            output: vec![ValueInfoProto::tensor(
                "y",
                FLOAT,
                &[None, Some(1), Some(2), Some(2)],
            )],
        };
        ModelProto::new(graph, 13)
    }

    #[test]
    fn weights_become_half_and_the_interface_stays_float() {
        let bytes = conv_model().encode_to_vec();
        let converted =
            ModelProto::decode(to_fp16(Path::new("m.onnx"), &bytes).unwrap().as_slice()).unwrap();
        let graph = converted.graph.unwrap();
        assert!(graph.initializer.iter().all(|t| t.data_type == FLOAT16));
        let w = &graph.initializer[0];
        assert_eq!(w.raw_data, half::f16::from_f32(0.5).to_le_bytes().to_vec());
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Cast", "Conv", "Clip", "Cast"]);
        assert_eq!(graph.node[0].input, ["x"]);
        assert_eq!(graph.node[0].attribute[0].i, i64::from(FLOAT16));
        assert_eq!(graph.node[1].input[0], "x__fp16");
        assert_eq!(graph.node[2].output, ["y__fp16"]);
        assert_eq!(graph.node[3].output, ["y"]);
        assert_eq!(graph.node[3].attribute[0].i, i64::from(FLOAT));
        assert_eq!(elem_type(&graph.input[0]), Some(FLOAT));
        assert_eq!(elem_type(&graph.output[0]), Some(FLOAT));
    }

    /// The real default backbone, converted, run by the real ONNX Runtime (on the CPU here: it has float16
    /// kernels too, though headstart only offers fp16 on CUDA), against the float32 original.
    #[test]
    fn the_converted_default_backbone_matches_float32() {
        use ort::value::TensorRef;
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/efficientnet-lite0.onnx");
        let bytes = std::fs::read(&path).unwrap();
        let half = to_fp16(&path, &bytes).unwrap();
        assert!(
            half.len() < bytes.len() * 6 / 10,
            "weights should take half the bytes"
        );
        let environment = crate::runtime::environment(&Default::default()).unwrap();
        let input: Vec<f32> = (0..2 * 3 * 224 * 224u64)
            .map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0)
            .collect();
        let features = |model: &[u8]| {
            let mut session = ort::session::Session::builder(&environment)
                .unwrap()
                .commit_from_memory(model)
                .unwrap();
            let tensor =
                TensorRef::from_array_view(([2usize, 3, 224, 224], input.as_slice())).unwrap();
            let outputs = session.run(ort::inputs!["image" => tensor]).unwrap();
            let (_, values) = outputs["features"].try_extract_tensor::<f32>().unwrap();
            values.to_vec()
        };
        let (full, reduced) = (features(&bytes), features(&half));
        for (a, b) in full.chunks(1280).zip(reduced.chunks(1280)) {
            let cosine = crate::metrics::cosine(a, b);
            assert!(cosine > 0.999, "cosine {cosine}");
        }
    }

    /// The float32 text backbone converts too (its attention mask, LayerNorms and GELU in float16).
    #[test]
    fn the_converted_float32_minilm_matches_float32() {
        use ort::value::TensorRef;
        let model = crate::zoo::find("all-minilm-l6-v2-fp32").unwrap();
        let path = crate::zoo::onnx_path(&model).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let half = to_fp16(&path, &bytes).unwrap();
        let environment = crate::runtime::environment(&Default::default()).unwrap();
        // Two texts of 6 and 4 tokens, the second padded.
        let ids: Vec<i64> = vec![101, 1037, 2158, 2003, 5983, 102, 101, 7592, 2088, 102, 0, 0];
        let mask: Vec<i64> = vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0];
        let types = vec![0i64; 12];
        let pooled = |model: &[u8]| {
            let mut session = ort::session::Session::builder(&environment)
                .unwrap()
                .commit_from_memory(model)
                .unwrap();
            let outputs = session
                .run(ort::inputs![
                    "input_ids" => TensorRef::from_array_view(([2usize, 6], ids.as_slice())).unwrap(),
                    "attention_mask" => TensorRef::from_array_view(([2usize, 6], mask.as_slice())).unwrap(),
                    "token_type_ids" => TensorRef::from_array_view(([2usize, 6], types.as_slice())).unwrap()
                ])
                .unwrap();
            let (_, values) = outputs["last_hidden_state"]
                .try_extract_tensor::<f32>()
                .unwrap();
            // Masked mean over tokens, per text.
            (0..2)
                .map(|t| {
                    let mut sum = vec![0.0f32; 384];
                    for token in (0..6).filter(|&k| mask[t * 6 + k] == 1) {
                        for (s, v) in sum.iter_mut().zip(&values[(t * 6 + token) * 384..][..384]) {
                            *s += v;
                        }
                    }
                    sum
                })
                .collect::<Vec<_>>()
        };
        for (a, b) in pooled(&bytes).iter().zip(pooled(&half).iter()) {
            let cosine = crate::metrics::cosine(a, b);
            assert!(cosine > 0.999, "cosine {cosine}");
        }
    }

    #[test]
    fn quantized_models_are_refused_by_name() {
        let mut model = conv_model();
        let graph = model.graph.as_mut().unwrap();
        graph.node.push(NodeProto::new(
            "DynamicQuantizeLinear",
            &["y"],
            &["q", "s", "z"],
        ));
        let err = to_fp16(Path::new("int8.onnx"), &model.encode_to_vec())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("int8.onnx")
                && err.contains("DynamicQuantizeLinear")
                && err.contains("fp32"),
            "{err}"
        );
    }
}
