//! A float32 model rewritten for int8 arithmetic in ONNX's QDQ form: each convolution and matrix product takes
//! int8 weights through a DequantizeLinear (one scale per output channel for convolutions), and each float
//! activation around them passes a QuantizeLinear → DequantizeLinear pair with a range calibrated on the
//! user's data. ONNX Runtime fuses DequantizeLinear → op → QuantizeLinear into integer kernels; any other
//! runtime can run the file as written. Graph outputs stay float32, so features are read as before.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;
use serde::{Deserialize, Serialize};

use super::proto::{ATTRIBUTE_INT, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::error::{Error, Result};

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

/// Symmetric int8 over [-127, 127]: one scale per slice of `values` (`slices` of them, contiguous).
fn symmetric_int8(values: &[f32], slices: usize) -> (Vec<i8>, Vec<f32>) {
    let len = values.len() / slices.max(1);
    let mut quantized = Vec::with_capacity(values.len());
    let mut scales = Vec::new();
    for slice in values.chunks(len.max(1)) {
        let largest = slice.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let scale = if largest > 0.0 && largest.is_finite() {
            largest / 127.0
        } else {
            1.0
        };
        quantized.extend(
            slice
                .iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (quantized, scales)
}

fn dequantize_node(
    input: &str,
    scale: &str,
    zero: &str,
    output: &str,
    axis: Option<i64>,
) -> NodeProto {
    let mut node = NodeProto::new("DequantizeLinear", &[input, scale, zero], &[output]);
    if let Some(axis) = axis {
        node.attribute.push(AttributeProto {
            name: "axis".into(),
            r#type: ATTRIBUTE_INT,
            i: axis,
            ..Default::default()
        });
    }
    node
}

/// Quantised weights and biases, and the DequantizeLinear nodes that give the ops their float view.
#[derive(Default)]
struct Weights {
    tensors: Vec<TensorProto>,
    nodes: Vec<NodeProto>,
    /// Each quantised weight, by the float weight's name (a weight read twice is quantised once).
    quantized: HashMap<String, QuantizedWeight>,
    /// Float weights and biases given an int8 or int32 form.
    replaced: HashSet<String>,
}

/// A weight's int8 scales, and what rounding did to it: for each output channel and input channel, the
/// sum over the kernel of (int8 value × scale − float value).
#[derive(Clone)]
struct QuantizedWeight {
    scales: Vec<f32>,
    kernel_error: Vec<f32>,
}

impl Weights {
    /// `tensor` as symmetric int8: one scale per output channel (`channels_first`: a convolution's axis 0),
    /// else one for the whole matrix.
    fn int8(&mut self, tensor: &TensorProto, channels_first: bool) -> QuantizedWeight {
        let name = tensor.name.as_str();
        if let Some(done) = self.quantized.get(name) {
            return done.clone();
        }
        let values = tensor
            .float_values()
            .expect("the plan chose float constants");
        let slices = if channels_first {
            tensor.dims[0].max(1) as usize
        } else {
            1
        };
        let (quantized, scales) = symmetric_int8(&values, slices);
        let (q, s, z) = (
            quantized_name(name),
            format!("{name}__int8_scale"),
            format!("{name}__int8_zero_point"),
        );
        let scale_dims: &[i64] = if channels_first {
            &[slices as i64]
        } else {
            &[]
        };
        self.tensors
            .push(TensorProto::int8s(&q, &tensor.dims, &quantized));
        self.tensors
            .push(TensorProto::floats(&s, scale_dims, &scales));
        self.tensors
            .push(TensorProto::int8s(&z, scale_dims, &vec![0; scales.len()]));
        self.nodes.push(dequantize_node(
            &q,
            &s,
            &z,
            &dequantized_name(name),
            channels_first.then_some(0),
        ));
        // Kernel sums of the rounding error, per (output, input) channel pair of a convolution.
        let kernel = tensor
            .dims
            .iter()
            .skip(2)
            .try_fold(1i64, |all, d| all.checked_mul(*d))
            .and_then(|k| usize::try_from(k).ok())
            .unwrap_or(1)
            .max(1);
        let per_output = values.len() / slices.max(1);
        let kernel_error = if !channels_first {
            Vec::new()
        } else {
            values
                .chunks(kernel)
                .zip(quantized.chunks(kernel))
                .enumerate()
                .map(|(i, (float, int))| {
                    let scale = scales[(i * kernel / per_output.max(1)).min(scales.len() - 1)];
                    float
                        .iter()
                        .zip(int)
                        .map(|(f, q)| f32::from(*q) * scale - f)
                        .sum()
                })
                .collect()
        };
        let done = QuantizedWeight {
            scales,
            kernel_error,
        };
        self.quantized.insert(name.to_string(), done.clone());
        self.replaced.insert(name.to_string());
        done
    }

    /// A convolution's bias as int32 on the grid of input × weight scales, as integer kernels accumulate;
    /// named after the convolution's `output` (the grid depends on its input). `shift` is subtracted first
    /// (bias correction). Returns the dequantised name.
    fn int32_bias(
        &mut self,
        bias: &TensorProto,
        weight_scales: &[f32],
        input_scale: f32,
        shift: Option<Vec<f32>>,
        output: &str,
    ) -> String {
        let mut values = bias.float_values().expect("the plan chose float constants");
        if let Some(shift) = shift.filter(|s| s.len() == values.len()) {
            for (value, shift) in values.iter_mut().zip(shift) {
                *value -= shift;
            }
        }
        let scales: Vec<f32> = weight_scales.iter().map(|w| w * input_scale).collect();
        let quantized: Vec<i32> = values
            .iter()
            .zip(scales.iter().cycle())
            .map(|(v, s)| {
                (f64::from(*v) / f64::from(*s))
                    .round()
                    .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
            })
            .collect();
        let base = format!("{output}__bias");
        let (q, s, z) = (
            format!("{base}_int32"),
            format!("{base}_scale"),
            format!("{base}_zero_point"),
        );
        let dims = [scales.len() as i64];
        self.tensors
            .push(TensorProto::int32s(&q, &dims, &quantized));
        self.tensors.push(TensorProto::floats(&s, &dims, &scales));
        self.tensors
            .push(TensorProto::int32s(&z, &dims, &vec![0; scales.len()]));
        let dequantized = format!("{base}_dq");
        self.replaced.insert(bias.name.clone());
        self.nodes
            .push(dequantize_node(&q, &s, &z, &dequantized, Some(0)));
        dequantized
    }
}

/// Bias correction (Nagel et al., "Data-Free Quantization", 2019): int8 rounding moves each output
/// channel's mean by Σ (rounding error × input channel mean); subtracting that from the bias puts it back.
/// `None` when the input's means were not measured or do not fit the weight.
fn output_shift(conv: &NodeProto, weight: &QuantizedWeight, means: &[f32]) -> Option<Vec<f32>> {
    let outputs = weight.scales.len();
    let group = group_of(conv) as usize;
    let per_group_in = weight.kernel_error.len() / outputs.max(1);
    // A weight whose values do not fill its shape gets no correction (ONNX Runtime refuses such a model).
    if per_group_in == 0
        || weight.kernel_error.len() != outputs * per_group_in
        || means.len() != per_group_in * group
        || !outputs.is_multiple_of(group)
    {
        return None;
    }
    let per_group_out = outputs / group;
    weight
        .kernel_error
        .chunks(per_group_in)
        .enumerate()
        .map(|(output, errors)| {
            let first = (output / per_group_out) * per_group_in;
            let means = means.get(first..first + per_group_in)?;
            Some(errors.iter().zip(means).map(|(e, m)| e * m).sum())
        })
        .collect()
}

/// A convolution's `group` attribute (1 when absent).
pub(super) fn group_of(conv: &NodeProto) -> i64 {
    conv.attribute
        .iter()
        .find(|a| a.name == "group")
        .map_or(1, |a| a.i.max(1))
}

/// Names of what quantisation adds for `tensor`; the suffixes keep them apart from the model's own names.
fn quantized_name(tensor: &str) -> String {
    format!("{tensor}__int8")
}

fn dequantized_name(tensor: &str) -> String {
    format!("{tensor}__int8_dq")
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
mod tests {
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
}
