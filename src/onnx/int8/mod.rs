//! A float32 model rewritten for int8 arithmetic in ONNX's QDQ form: each convolution and matrix product takes
//! int8 weights through a DequantizeLinear (one scale per output channel for convolutions), and each float
//! activation around them passes a QuantizeLinear → DequantizeLinear pair with a range calibrated on the
//! user's data. ONNX Runtime fuses DequantizeLinear → op → QuantizeLinear into integer kernels; any other
//! runtime can run the file as written. Graph outputs stay float32, so features are read as before.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;
use serde::{Deserialize, Serialize};

use super::proto::{GraphProto, ModelProto, NodeProto, TensorProto};
use crate::error::{Error, Result};

mod weights;

pub(crate) use weights::group_of;
use weights::{Weights, dequantize_node, dequantized_name, output_shift, quantized_name};

/// The most channels a convolution input's means are measured for.
const MAX_CHANNELS: usize = 1 << 20;

/// The oldest default-domain opset with per-channel DequantizeLinear.
const MINIMUM_OPSET: i64 = 13;

/// Ops that already compute in integers: such a model is refused rather than quantised twice.
const QUANTIZED_OPS: &[&str] = &[
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "QLinearConv",
    "QLinearMatMul",
    "ConvInteger",
    "MatMulInteger",
];

/// What a tensor held over the calibration inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorRange {
    pub tensor: String,
    pub low: f32,
    pub high: f32,
    /// A convolution input's mean per channel (axis 1): what bias correction needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub means: Vec<f32>,
}

/// A tensor calibration measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CalibrationTarget {
    pub tensor: String,
    /// When a convolution reads it, its channel count: the means of its channels are measured too.
    pub channels: Option<usize>,
}

/// Which nodes and tensors quantisation touches.
struct Plan {
    /// Conv nodes with constant weights (and bias), by index.
    convs: Vec<usize>,
    /// MatMul and Gemm nodes whose second input is a constant matrix, by index (one scale per matrix,
    /// which fits either orientation of a Gemm's weights).
    matmuls: Vec<usize>,
    /// Float activations that get a QuantizeLinear → DequantizeLinear pair, in the order found.
    activations: Vec<String>,
}

impl Plan {
    fn of(graph: &GraphProto) -> Plan {
        let constants: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let float_constant = |name: &str, ranks: &[usize]| {
            constants
                .get(name)
                .is_some_and(|t| t.float_values().is_some() && ranks.contains(&t.dims.len()))
        };
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, node) in graph.node.iter().enumerate() {
            for input in &node.input {
                consumers.entry(input.as_str()).or_default().push(index);
            }
        }
        // A Relu or ReLU6 that alone reads an op's output: the pair goes after it, where the range starts at
        // zero, so ONNX Runtime folds the activation into the integer kernel.
        let settled = |output: &str| -> String {
            match consumers.get(output).map(Vec::as_slice) {
                Some([only]) if is_zero_floor(&graph.node[*only], &constants) => graph.node[*only]
                    .output
                    .first()
                    .map_or_else(|| output.to_string(), Clone::clone),
                _ => output.to_string(),
            }
        };
        let mut plan = Plan {
            convs: Vec::new(),
            matmuls: Vec::new(),
            activations: Vec::new(),
        };
        let mut chosen = HashSet::new();
        let mut choose = |plan: &mut Plan, name: String| {
            if consumers.contains_key(name.as_str()) && chosen.insert(name.clone()) {
                plan.activations.push(name);
            }
        };
        for (index, node) in graph.node.iter().enumerate() {
            // A node without an input or an output is malformed: it is left as it is.
            if !node.domain.is_empty()
                || node.input.is_empty()
                || node.output.is_empty()
                || constants.contains_key(node.input[0].as_str())
            {
                continue;
            }
            match node.op_type.as_str() {
                "Conv"
                    if node.input.len() >= 2
                        && float_constant(&node.input[1], &[3, 4, 5])
                        && node
                            .input
                            .get(2)
                            .is_none_or(|b| b.is_empty() || float_constant(b, &[1])) =>
                {
                    plan.convs.push(index);
                    choose(&mut plan, node.input[0].clone());
                    choose(&mut plan, settled(&node.output[0]));
                }
                // The output stays float: ONNX Runtime runs DequantizeLinear → MatMul as an integer product
                // with a float result, which keeps a following bias and LayerNorm exact. A Gemm's bias stays
                // float.
                "MatMul" | "Gemm"
                    if node.input.len() >= 2 && float_constant(&node.input[1], &[2]) =>
                {
                    plan.matmuls.push(index);
                    choose(&mut plan, node.input[0].clone());
                }
                _ => {}
            }
        }
        // Residual sums of quantised activations are quantised too (else the convolutions around them could
        // not be fused); repeated until no more qualify.
        loop {
            let before = plan.activations.len();
            for node in &graph.node {
                if node.op_type == "Add"
                    && node.domain.is_empty()
                    && node.input.len() == 2
                    && !node.output.is_empty()
                    && node.input.iter().all(|i| plan.activations.contains(i))
                {
                    choose(&mut plan, settled(&node.output[0]));
                }
            }
            if plan.activations.len() == before {
                break;
            }
        }
        // The first convolution stays float, and its output: its few channels span very different ranges,
        // and one 8-bit grid for all of them loses more than any other tensor (on ELPV, half the int8
        // error). The convolution after it then runs in float too; both are among the smallest of the network.
        if let Some(first) = plan.convs.first().copied() {
            let node = &graph.node[first];
            let output = settled(&node.output[0]);
            let input = &node.input[0];
            let read_elsewhere = plan
                .convs
                .iter()
                .chain(&plan.matmuls)
                .any(|&i| i != first && graph.node[i].input[0] == *input)
                || graph
                    .node
                    .iter()
                    .any(|n| n.op_type == "Add" && n.input.contains(input));
            plan.activations
                .retain(|t| *t != output && (read_elsewhere || t != input));
            plan.convs.remove(0);
        }
        plan
    }
}

/// Relu, or a Clip whose lower bound is a constant 0.
fn is_zero_floor(node: &NodeProto, constants: &HashMap<&str, &TensorProto>) -> bool {
    if !node.domain.is_empty() {
        return false;
    }
    match node.op_type.as_str() {
        "Relu" => true,
        "Clip" => match node.input.get(1) {
            Some(low) => constants
                .get(low.as_str())
                .and_then(|t| t.float_values())
                .is_some_and(|v| v == [0.0]),
            // Opset 6–10: bounds are attributes.
            None => node.attribute.iter().any(|a| a.name == "min" && a.f == 0.0),
        },
        _ => false,
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<ModelProto> {
    let model = ModelProto::decode(bytes)
        .map_err(|e| Error::model(path, format!("not an ONNX model: {e}")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Error::model(path, "the model has no graph"))?;
    if let Some(node) = graph
        .node
        .iter()
        .find(|n| QUANTIZED_OPS.contains(&n.op_type.as_str()))
    {
        return Err(int8_refused(format!(
            "{} already has {} nodes: it is quantised (use fp32 with this model)",
            path.display(),
            node.op_type
        )));
    }
    Ok(model)
}

fn int8_refused(why: String) -> Error {
    Error::parameter("precision", format!("int8: {why}"))
}

/// The float activations whose ranges calibration measures, in graph order.
pub(crate) fn calibration_targets(path: &Path, bytes: &[u8]) -> Result<Vec<CalibrationTarget>> {
    let model = decode(path, bytes)?;
    let graph = model.graph.as_ref().expect("decode checked the graph");
    let plan = Plan::of(graph);
    if plan.convs.is_empty() && plan.matmuls.is_empty() {
        return Err(int8_refused(format!(
            "{} has no convolution or matrix product with constant weights to quantise",
            path.display()
        )));
    }
    // A convolution's input channels: the weight's second axis times the groups.
    let conv_inputs: HashMap<&str, usize> = plan
        .convs
        .iter()
        .filter_map(|&i| {
            let node = &graph.node[i];
            let weight = graph.initializer.iter().find(|t| t.name == node.input[1])?;
            let channels = usize::try_from(weight.dims[1].checked_mul(group_of(node))?).ok()?;
            // More channels than any network has is a malformed shape: nothing is measured for it.
            let channels = Some(channels).filter(|&c| c <= MAX_CHANNELS)?;
            Some((node.input[0].as_str(), channels))
        })
        .collect();
    Ok(plan
        .activations
        .iter()
        .map(|tensor| CalibrationTarget {
            tensor: tensor.clone(),
            channels: conv_inputs.get(tensor.as_str()).copied(),
        })
        .collect())
}

/// Activation scale and zero point: an unsigned 8-bit grid over the range, widened to hold 0 exactly (padding
/// and ReLU floors must stay exact).
fn activation_grid(range: &TensorRange) -> (f32, u8) {
    let (low, high) = (range.low.min(0.0), range.high.max(0.0));
    let scale = (high - low) / 255.0;
    if !(scale.is_finite() && scale > 0.0) {
        return (1.0, 0);
    }
    let zero = (-low / scale).round().clamp(0.0, 255.0) as u8;
    (scale, zero)
}

/// The model in `bytes` (the file at `path`, for errors) with int8 weights and QDQ pairs on the activations
/// `ranges` cover (every tensor [`calibration_tensors`] names must have one).
pub(crate) fn quantize(path: &Path, bytes: &[u8], ranges: &[TensorRange]) -> Result<Vec<u8>> {
    let mut model = decode(path, bytes)?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(0);
    if opset < MINIMUM_OPSET {
        return Err(int8_refused(format!(
            "{} uses opset {opset}; per-channel int8 needs opset {MINIMUM_OPSET} or later",
            path.display()
        )));
    }
    let graph = model.graph.as_mut().expect("decode checked the graph");
    let mut plan = Plan::of(graph);
    let by_name: HashMap<&str, &TensorRange> =
        ranges.iter().map(|r| (r.tensor.as_str(), r)).collect();
    // Only what the calibration measured is quantised: ranges recorded by an older headstart, whose plan
    // covered fewer tensors, rebuild the model they were made for.
    if !plan
        .activations
        .iter()
        .any(|t| by_name.contains_key(t.as_str()))
    {
        return Err(int8_refused(format!(
            "the calibration has no range for any activation of {} (was it calibrated on another model?)",
            path.display()
        )));
    }
    plan.activations
        .retain(|t| by_name.contains_key(t.as_str()));
    let measured = |index: &usize| by_name.contains_key(graph.node[*index].input[0].as_str());
    plan.convs.retain(measured);
    plan.matmuls.retain(measured);
    let mut added: Vec<TensorProto> = Vec::new();
    // Activation grids, and the QDQ pair that follows each activation's producer.
    let mut grids: HashMap<String, f32> = HashMap::new();
    let mut pairs: HashMap<String, [NodeProto; 2]> = HashMap::new();
    for tensor in &plan.activations {
        let range = by_name[tensor.as_str()];
        let (scale, zero) = activation_grid(range);
        let (scale_name, zero_name) = (
            format!("{tensor}__int8_scale"),
            format!("{tensor}__int8_zero_point"),
        );
        added.push(TensorProto::floats(&scale_name, &[], &[scale]));
        added.push(TensorProto::uint8s(&zero_name, &[], &[zero]));
        let quantized = quantized_name(tensor);
        pairs.insert(
            tensor.clone(),
            [
                NodeProto::new(
                    "QuantizeLinear",
                    &[tensor, &scale_name, &zero_name],
                    &[&quantized],
                ),
                dequantize_node(
                    &quantized,
                    &scale_name,
                    &zero_name,
                    &dequantized_name(tensor),
                    None,
                ),
            ],
        );
        grids.insert(tensor.clone(), scale);
    }

    let constants: HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut weights = Weights::default();
    let mut rewired: Vec<(usize, usize, String)> = Vec::new();
    for &index in &plan.convs {
        let node = &graph.node[index];
        let weight = weights.int8(constants[node.input[1].as_str()], true);
        rewired.push((index, 1, dequantized_name(&node.input[1])));
        if let (Some(bias), Some(input_scale)) = (
            node.input.get(2).filter(|b| !b.is_empty()),
            grids.get(&node.input[0]),
        ) {
            let shift = by_name
                .get(node.input[0].as_str())
                .and_then(|range| output_shift(node, &weight, &range.means));
            let dequantized = weights.int32_bias(
                constants[bias.as_str()],
                &weight.scales,
                *input_scale,
                shift,
                &node.output[0],
            );
            rewired.push((index, 2, dequantized));
        }
    }
    for &index in &plan.matmuls {
        let weight = &graph.node[index].input[1];
        weights.int8(constants[weight.as_str()], false);
        rewired.push((index, 1, dequantized_name(weight)));
    }
    let Weights {
        tensors,
        nodes: weight_nodes,
        replaced,
        ..
    } = weights;
    added.extend(tensors);
    for (index, slot, name) in rewired {
        graph.node[index].input[slot] = name;
    }

    // Every reader of a quantised activation reads its dequantised copy; graph outputs keep the float one.
    for node in graph.node.iter_mut() {
        for input in node.input.iter_mut() {
            if pairs.contains_key(input.as_str()) {
                *input = dequantized_name(input);
            }
        }
    }
    let mut nodes = weight_nodes;
    for input in &graph.input {
        if let Some(pair) = pairs.remove(&input.name) {
            nodes.extend(pair);
        }
    }
    for node in std::mem::take(&mut graph.node) {
        let follow: Vec<[NodeProto; 2]> =
            node.output.iter().filter_map(|o| pairs.remove(o)).collect();
        nodes.push(node);
        nodes.extend(follow.into_iter().flatten());
    }
    graph.node = nodes;

    // Float weights no node reads any more are dropped: that is where the file gets four times smaller.
    let still_read: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let dropped: HashSet<String> = replaced
        .into_iter()
        .filter(|w| !still_read.contains(w.as_str()))
        .collect();
    graph.initializer.retain(|t| !dropped.contains(&t.name));
    graph.input.retain(|i| !dropped.contains(&i.name));
    graph.initializer.extend(added);
    Ok(model.encode_to_vec())
}

#[cfg(test)]
mod tests;
