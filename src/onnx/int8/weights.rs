//! Weights in int8: symmetric scales per output channel, the DequantizeLinear nodes that read them, and the
//! bias shift that keeps a convolution's output centred.

use std::collections::{HashMap, HashSet};

use crate::onnx::proto::{ATTRIBUTE_INT, AttributeProto, NodeProto, TensorProto};

/// Symmetric int8 over [-127, 127]: one scale per slice of `values` (`slices` of them, contiguous).
pub(super) fn symmetric_int8(values: &[f32], slices: usize) -> (Vec<i8>, Vec<f32>) {
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

pub(super) fn dequantize_node(
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
pub(super) struct Weights {
    pub(super) tensors: Vec<TensorProto>,
    pub(super) nodes: Vec<NodeProto>,
    /// Each quantised weight, by the float weight's name (a weight read twice is quantised once).
    pub(super) quantized: HashMap<String, QuantizedWeight>,
    /// Float weights and biases given an int8 or int32 form.
    pub(super) replaced: HashSet<String>,
}

/// A weight's int8 scales, and what rounding did to it: for each output channel and input channel, the
/// sum over the kernel of (int8 value × scale − float value).
#[derive(Clone)]
pub(super) struct QuantizedWeight {
    pub(super) scales: Vec<f32>,
    pub(super) kernel_error: Vec<f32>,
}

impl Weights {
    /// `tensor` as symmetric int8: one scale per output channel (`channels_first`: a convolution's axis 0),
    /// else one for the whole matrix.
    pub(super) fn int8(&mut self, tensor: &TensorProto, channels_first: bool) -> QuantizedWeight {
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
    pub(super) fn int32_bias(
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
pub(super) fn output_shift(
    conv: &NodeProto,
    weight: &QuantizedWeight,
    means: &[f32],
) -> Option<Vec<f32>> {
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
pub(crate) fn group_of(conv: &NodeProto) -> i64 {
    conv.attribute
        .iter()
        .find(|a| a.name == "group")
        .map_or(1, |a| a.i.max(1))
}

/// Names of what quantisation adds for `tensor`; the suffixes keep them apart from the model's own names.
pub(super) fn quantized_name(tensor: &str) -> String {
    format!("{tensor}__int8")
}

pub(super) fn dequantized_name(tensor: &str) -> String {
    format!("{tensor}__int8_dq")
}
