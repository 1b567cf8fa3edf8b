//! Quantisation on small graphs built here: the plan, the weights, and the rewritten model run in ONNX Runtime.

use super::*;
use crate::onnx::proto::{FLOAT, INT8, INT32, UINT8, ValueInfoProto};

/// A stem (x → Conv → Relu → Conv → x1, kept float), then x1 → Conv(w, b) → ReLU6 → Conv(w2) →
/// Add(residual) → y, and a MatMul tail.
fn model() -> ModelProto {
    let graph = GraphProto {
        name: "g".into(),
        node: vec![
            NodeProto::new("Conv", &["x", "w0"], &["s0"]),
            NodeProto::new("Relu", &["s0"], &["s"]),
            NodeProto::new("Conv", &["s", "w1"], &["x1"]),
            NodeProto::new("Conv", &["x1", "w", "b"], &["c"]),
            NodeProto::new("Clip", &["c", "zero", "six"], &["r"]),
            NodeProto::new("Conv", &["r", "w2"], &["c2"]),
            NodeProto::new("Add", &["c2", "r"], &["sum"]),
            NodeProto::new("Flatten", &["sum"], &["flat"]),
            NodeProto::new("MatMul", &["flat", "m"], &["y"]),
        ],
        initializer: vec![
            TensorProto::floats("w", &[2, 1, 1, 1], &[0.5, -2.0]),
            TensorProto::floats("w0", &[1, 1, 1, 1], &[1.5]),
            TensorProto::floats("w1", &[1, 1, 1, 1], &[0.7]),
            TensorProto::floats("b", &[2], &[0.25, 1.0]),
            TensorProto::floats("w2", &[2, 2, 1, 1], &[1.0, 0.0, 0.0, 1.0]),
            TensorProto::floats("zero", &[], &[0.0]),
            TensorProto::floats("six", &[], &[6.0]),
            TensorProto::floats("m", &[2, 3], &[1.0, 2.0, 3.0, -1.0, -2.0, -3.0]),
        ],
        input: vec![ValueInfoProto::tensor(
            "x",
            FLOAT,
            &[None, Some(1), Some(1), Some(1)],
        )],
        output: vec![
            ValueInfoProto::tensor("y", FLOAT, &[None, Some(3)]),
            ValueInfoProto::tensor("r", FLOAT, &[None, Some(2), Some(1), Some(1)]),
        ],
    };
    ModelProto::new(graph, 13)
}

fn ranges(names: &[String]) -> Vec<TensorRange> {
    names
        .iter()
        .map(|n| TensorRange {
            tensor: n.clone(),
            low: -1.0,
            high: 6.0,
            means: Vec::new(),
        })
        .collect()
}

fn tensors(bytes: &[u8]) -> Vec<String> {
    calibration_targets(Path::new("m.onnx"), bytes)
        .unwrap()
        .into_iter()
        .map(|t| t.tensor)
        .collect()
}

#[test]
fn the_plan_takes_conv_inputs_activation_outputs_and_residual_sums() {
    let bytes = model().encode_to_vec();
    let targets = calibration_targets(Path::new("m.onnx"), &bytes).unwrap();
    // The stem and its output (s) stay float; c is read only by the Clip, so its pair goes after it (r);
    // the sum feeds Flatten; y is an output only.
    let names: Vec<&str> = targets.iter().map(|t| t.tensor.as_str()).collect();
    assert_eq!(names, ["x1", "r", "c2", "flat", "sum"]);
    let channels: Vec<Option<usize>> = targets.iter().map(|t| t.channels).collect();
    assert_eq!(channels, [Some(1), Some(2), None, None, None]);
}

#[test]
fn weights_become_int8_and_activations_pass_qdq_pairs() {
    let path = Path::new("m.onnx");
    let bytes = model().encode_to_vec();
    let tensors = tensors(&bytes);
    let quantized = ModelProto::decode(
        quantize(path, &bytes, &ranges(&tensors))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let graph = quantized.graph.unwrap();
    let find = |name: &str| graph.initializer.iter().find(|t| t.name == name);
    assert!(
        find("w").is_none() && find("b").is_none() && find("m").is_none(),
        "float weights and biases are dropped"
    );
    let w = find("w__int8").unwrap();
    assert_eq!(
        (w.data_type, w.raw_data.as_slice()),
        (INT8, [127u8, (-127i8) as u8].as_slice())
    );
    assert_eq!(
        find("w__int8_scale").unwrap().float_values().unwrap(),
        [0.5 / 127.0, 2.0 / 127.0]
    );
    // Input grid: [-1, 6] over 255 steps; bias = round(b / (input scale × weight scale)).
    let input_scale = 7.0f32 / 255.0;
    let bias = find("c__bias_int32").unwrap();
    assert_eq!(bias.data_type, INT32);
    let expected: Vec<u8> = [
        (0.25 / (input_scale * 0.5 / 127.0)).round() as i32,
        (1.0 / (input_scale * 2.0 / 127.0)).round() as i32,
    ]
    .iter()
    .flat_map(|v| v.to_le_bytes())
    .collect();
    assert_eq!(bias.raw_data, expected);
    assert_eq!(find("x1__int8_zero_point").unwrap().data_type, UINT8);
    assert_eq!(find("x1__int8_zero_point").unwrap().raw_data, [36u8]);
    assert!(
        find("w0").is_some() && find("w1").is_some() && find("w0__int8").is_none(),
        "the stem stays float"
    );
    // Topological order: every input is a graph input, a constant or made by an earlier node.
    let mut known: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    known.insert("x");
    for node in &graph.node {
        for input in &node.input {
            assert!(
                known.contains(input.as_str()),
                "{} reads {input} before it is made",
                node.op_type
            );
        }
        known.extend(node.output.iter().map(String::as_str));
    }
    let conv = graph.node.iter().find(|n| n.output == ["c"]).unwrap();
    assert_eq!(conv.input, ["x1__int8_dq", "w__int8_dq", "c__bias_dq"]);
    let add = graph.node.iter().find(|n| n.op_type == "Add").unwrap();
    assert_eq!(add.input, ["c2__int8_dq", "r__int8_dq"]);
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["y", "r"], "outputs keep their float tensors");
    let ops = |op: &str| graph.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!((ops("QuantizeLinear"), ops("DequantizeLinear")), (5, 5 + 4));
}

#[test]
fn missing_ranges_and_quantised_models_are_refused() {
    let path = Path::new("m.onnx");
    let bytes = model().encode_to_vec();
    let err = quantize(path, &bytes, &[]).unwrap_err().to_string();
    assert!(
        err.contains("no range for any activation") && err.contains("m.onnx"),
        "{err}"
    );
    let tensors = tensors(&bytes);
    let once = quantize(path, &bytes, &ranges(&tensors)).unwrap();
    let err = quantize(path, &once, &ranges(&tensors))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already has") && err.contains("quantised"),
        "{err}"
    );
    let mut old = model();
    old.opset_import[0].version = 11;
    let err = quantize(path, &old.encode_to_vec(), &ranges(&tensors))
        .unwrap_err()
        .to_string();
    assert!(err.contains("opset 11"), "{err}");
}

#[test]
fn bias_correction_takes_back_the_mean_shift_of_rounding() {
    // One output channel over two input channels: 1.0 is exact on the grid 1/127, 0.3 rounds to 38/127.
    let mut graph = model().graph.unwrap();
    for tensor in graph.initializer.iter_mut() {
        match tensor.name.as_str() {
            "w" => *tensor = TensorProto::floats("w", &[1, 2, 1, 1], &[1.0, 0.3]),
            "b" => *tensor = TensorProto::floats("b", &[1], &[0.5]),
            _ => {}
        }
    }
    graph.node[3] = NodeProto::new("Conv", &["x1", "w", "b"], &["c"]);
    graph.node[5] = NodeProto::new("Conv", &["r", "w2"], &["c2"]);
    let bytes = ModelProto::new(graph, 13).encode_to_vec();
    let mut measured = ranges(&tensors(&bytes));
    measured[0].means = vec![2.0, 4.0];
    let path = Path::new("m.onnx");
    let quantized =
        ModelProto::decode(quantize(path, &bytes, &measured).unwrap().as_slice()).unwrap();
    let graph = quantized.graph.unwrap();
    let int32 = |name: &str| {
        let t = graph.initializer.iter().find(|t| t.name == name).unwrap();
        i32::from_le_bytes(t.raw_data[..4].try_into().unwrap())
    };
    let shift = (38.0f32 / 127.0 - 0.3) * 4.0;
    let grid = (7.0f32 / 255.0) * (1.0 / 127.0);
    assert_eq!(
        int32("c__bias_int32"),
        ((0.5 - shift) / grid).round() as i32
    );
    assert_ne!(
        int32("c__bias_int32"),
        (0.5 / grid).round() as i32,
        "the correction shows"
    );
}

/// Hostile files: a Relu without an output, a weight whose values do not fill its shape, a shape whose
/// product overflows, channel means of the wrong length. Quantisation writes a model (ONNX Runtime then
/// refuses what is malformed) and does not panic.
#[test]
fn malformed_graphs_are_quantised_without_panicking() {
    let mut graph = model().graph.unwrap();
    graph.node.push(NodeProto {
        op_type: "Relu".into(),
        input: vec!["c2".into()],
        ..Default::default()
    });
    for tensor in graph.initializer.iter_mut() {
        match tensor.name.as_str() {
            "w" => *tensor = TensorProto::floats("w", &[2, 1, 3, 3], &[0.5, -2.0, 1.0]),
            "w2" => *tensor = TensorProto::floats("w2", &[i64::MAX, 2, i64::MAX, 2], &[1.0]),
            _ => {}
        }
    }
    let bytes = ModelProto::new(graph, 13).encode_to_vec();
    let mut measured = ranges(&tensors(&bytes));
    for range in measured.iter_mut() {
        range.means = vec![1.0; 7];
    }
    assert!(quantize(Path::new("m.onnx"), &bytes, &measured).is_ok());
}
