//! Late taps: tensors near the end of a backbone worth trying as features (`--features auto`), found from the
//! graph's structure rather than its names, so any CNN or transformer file gets some.
//! - Block outputs: residual sums (an `Add` of two computed tensors, one of which also feeds another op: the
//!   skip), taken after a sole following `Relu` or `LayerNormalization`; and the inputs of expanding 1×1
//!   convolutions, where the blocks of MobileNet-style networks start.
//! - Expansions: the outputs of expanding 1×1 convolutions (more output than input channels), the widest
//!   features a late block computes.

use std::collections::{HashMap, HashSet};

use prost::Message;

use super::int8::group_of;
use super::proto::{GraphProto, ModelProto, NodeProto};

/// The last `count` block outputs and the last `count` expansions that `features` is computed from, latest
/// first; `features` itself is left out. `None` when the bytes are not an ONNX model.
pub(crate) fn late_taps(bytes: &[u8], features: &str, count: usize) -> Option<Vec<String>> {
    let model = ModelProto::decode(bytes).ok()?;
    let graph = model.graph?;
    let upstream = ancestors(&graph, features);
    let produced: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(String::as_str))
        .collect();
    // Graph inputs are not features; neither is anything `features` does not depend on.
    let usable = |t: &&String| {
        t.as_str() != features && produced.contains(t.as_str()) && upstream.contains(t.as_str())
    };
    let latest = |found: Vec<String>| -> Vec<String> {
        let mut seen = HashSet::new();
        let mut kept: Vec<String> = found
            .into_iter()
            .rev()
            .filter(|t| usable(&t) && seen.insert(t.clone()))
            .collect();
        kept.truncate(count);
        kept
    };
    let (blocks, expansions) = scan(&graph);
    let mut taps = latest(blocks);
    for tensor in latest(expansions) {
        if !taps.contains(&tensor) {
            taps.push(tensor);
        }
    }
    Some(taps)
}

/// Block outputs and expansions in graph (topological) order.
fn scan(graph: &GraphProto) -> (Vec<String>, Vec<String>) {
    let constants: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut consumers: HashMap<&str, Vec<&NodeProto>> = HashMap::new();
    for node in &graph.node {
        for input in &node.input {
            consumers.entry(input.as_str()).or_default().push(node);
        }
    }
    let readers = |tensor: &str| consumers.get(tensor).map_or(&[][..], Vec::as_slice);
    let computed = |tensor: &str| !tensor.is_empty() && !constants.contains(tensor);
    let (mut blocks, mut expansions) = (Vec::new(), Vec::new());
    for node in &graph.node {
        let Some(output) = node.output.first() else {
            continue;
        };
        match node.op_type.as_str() {
            "Add" if node.input.len() == 2 && node.input.iter().all(|i| computed(i)) => {
                let skip = node
                    .input
                    .iter()
                    .any(|i| readers(i).iter().any(|n| n.op_type != "Add"));
                if skip {
                    let after = match readers(output) {
                        [next]
                            if matches!(next.op_type.as_str(), "Relu" | "LayerNormalization") =>
                        {
                            next.output.first().unwrap_or(output)
                        }
                        _ => output,
                    };
                    blocks.push(after.clone());
                }
            }
            "Conv" if expands(graph, node) => {
                blocks.push(node.input[0].clone());
                expansions.push(output.clone());
            }
            _ => {}
        }
    }
    (blocks, expansions)
}

/// A 1×1, ungrouped convolution with more output than input channels.
fn expands(graph: &GraphProto, conv: &NodeProto) -> bool {
    let Some(weight) = conv
        .input
        .get(1)
        .and_then(|w| graph.initializer.iter().find(|t| &t.name == w))
    else {
        return false;
    };
    matches!(weight.dims.as_slice(), &[out, input, 1, 1] if out > input) && group_of(conv) == 1
}

/// Every tensor `target` is computed from, `target` included.
fn ancestors<'g>(graph: &'g GraphProto, target: &'g str) -> HashSet<&'g str> {
    let producer: HashMap<&str, &NodeProto> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
        .collect();
    let mut seen = HashSet::from([target]);
    let mut stack = vec![target];
    while let Some(tensor) = stack.pop() {
        if let Some(node) = producer.get(tensor) {
            for input in &node.input {
                if seen.insert(input.as_str()) {
                    stack.push(input.as_str());
                }
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::TensorProto;

    fn conv(input: &str, weight: &str, output: &str) -> NodeProto {
        NodeProto::new("Conv", &[input, weight], &[output])
    }

    /// stem → [expand → project] + skip → expand → head → pooled, and a side branch not feeding the features.
    fn graph() -> Vec<u8> {
        let weight = |name: &str, out: i64, input: i64| {
            TensorProto::floats(
                name,
                &[out, input, 1, 1],
                &vec![0.0; (out * input) as usize],
            )
        };
        let graph = GraphProto {
            node: vec![
                conv("x", "w_stem", "stem"),
                conv("stem", "w_up1", "up1"),
                NodeProto::new("Relu", &["up1"], &["up1.relu"]),
                conv("up1.relu", "w_down1", "down1"),
                NodeProto::new("Add", &["down1", "stem"], &["block1"]),
                NodeProto::new("Relu", &["block1"], &["block1.relu"]),
                conv("block1.relu", "w_up2", "up2"),
                NodeProto::new("GlobalAveragePool", &["up2"], &["pooled"]),
                conv("block1.relu", "w_side", "side"),
            ],
            initializer: vec![
                weight("w_stem", 4, 3),
                weight("w_up1", 8, 4),
                weight("w_down1", 4, 8),
                weight("w_up2", 16, 4),
                weight("w_side", 32, 4),
            ],
            ..Default::default()
        };
        ModelProto::new(graph, 17).encode_to_vec()
    }

    #[test]
    fn finds_block_outputs_and_expansions_that_feed_the_features() {
        let taps = late_taps(&graph(), "pooled", 2).unwrap();
        // Blocks, latest first: the input of the last expansion (block1.relu, also the residual sum after
        // its Relu), then the input of the one before (the graph input x, read by the stem, is no tap);
        // then the expansions (side does not feed `pooled`).
        assert_eq!(taps, ["block1.relu", "stem", "up2", "up1"]);
        assert_eq!(
            late_taps(&graph(), "pooled", 1).unwrap(),
            ["block1.relu", "up2"]
        );
        assert_eq!(late_taps(b"not onnx", "pooled", 2), None);
    }
}
