//! Building ONNX graphs node by node: what export appends to a backbone, and what each head lowers itself to.

use super::proto::{FLOAT, GraphProto, INT64, NodeProto, TensorProto, ValueInfoProto};

/// The class probabilities output of an exported file: float \[N, K\].
pub const PROBABILITIES: &str = "probabilities";
/// The top class output of a single-label file: int64 \[N\].
pub const CLASS_INDEX: &str = "class_index";
/// The output of a multi-label file: bool [N, K], whether each label's probability reaches its threshold.
pub const LABELS: &str = "labels";

/// Appends nodes to a graph, naming their outputs `headstart/...` so they cannot collide with the
/// backbone's, and writing each op as the model's opset defines it.
pub(crate) struct GraphBuilder {
    pub(crate) graph: GraphProto,
    pub(crate) opset: i64,
    count: usize,
}

impl GraphBuilder {
    pub(crate) fn new(opset: i64) -> Self {
        GraphBuilder {
            graph: GraphProto::default(),
            opset,
            count: 0,
        }
    }

    pub(crate) fn name(&mut self, what: &str) -> String {
        self.count += 1;
        format!("headstart/{what}_{}", self.count)
    }

    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        configure: impl FnOnce(NodeProto) -> NodeProto,
    ) -> String {
        let output = self.name(&op.to_lowercase());
        self.graph
            .node
            .push(configure(NodeProto::new(op, inputs, &[output.as_str()])));
        output
    }

    /// Adds a constant made by `tensor` under a fresh name, and returns the name.
    pub(crate) fn initializer(
        &mut self,
        what: &str,
        tensor: impl FnOnce(&str) -> TensorProto,
    ) -> String {
        let name = self.name(what);
        self.graph.initializer.push(tensor(&name));
        name
    }

    /// The outputs of a single-label head from its `scores` [N, `classes`]: softmax(scores / temperature) and
    /// the top class.
    pub(crate) fn softmax_outputs(&mut self, scores: &str, temperature: f32, classes: usize) {
        let temperature = self.floats("temperature", &[], &[temperature.max(1e-6)]);
        let scaled = self.node("Div", &[scores, &temperature], |n| n);
        let axis = if self.opset >= 13 { -1 } else { 1 };
        let probabilities = self.node("Softmax", &[&scaled], |n| n.with_int("axis", axis));
        self.graph.node.push(NodeProto::new(
            "Identity",
            &[&probabilities],
            &[PROBABILITIES],
        ));
        self.graph.node.push(
            NodeProto::new("ArgMax", &[PROBABILITIES], &[CLASS_INDEX])
                .with_int("axis", 1)
                .with_int("keepdims", 0),
        );
        self.graph.output = vec![
            ValueInfoProto::tensor(PROBABILITIES, FLOAT, &[None, Some(classes as i64)]),
            ValueInfoProto::tensor(CLASS_INDEX, INT64, &[None]),
        ];
    }

    pub(crate) fn floats(&mut self, what: &str, dims: &[i64], values: &[f32]) -> String {
        self.initializer(what, |name| TensorProto::floats(name, dims, values))
    }

    pub(crate) fn int64s(&mut self, what: &str, dims: &[i64], values: &[i64]) -> String {
        self.initializer(what, |name| TensorProto::int64s(name, dims, values))
    }

    /// ReduceSum / ReduceMean over `axes`: the axes are an input from opset 13 (ReduceSum) or 18 (the
    /// others), an attribute before.
    pub(crate) fn reduce(
        &mut self,
        op: &str,
        input: &str,
        axes: &[i64],
        keep_dims: bool,
    ) -> String {
        let axes_as_input = if op == "ReduceSum" {
            self.opset >= 13
        } else {
            self.opset >= 18
        };
        let keep = i64::from(keep_dims);
        if axes_as_input {
            let axes = self.int64s("axes", &[axes.len() as i64], axes);
            self.node(op, &[input, &axes], |n| n.with_int("keepdims", keep))
        } else {
            self.node(op, &[input], |n| {
                n.with_ints("axes", axes).with_int("keepdims", keep)
            })
        }
    }

    pub(crate) fn unsqueeze(&mut self, input: &str, axes: &[i64]) -> String {
        if self.opset >= 13 {
            let axes = self.int64s("axes", &[axes.len() as i64], axes);
            self.node("Unsqueeze", &[input, &axes], |n| n)
        } else {
            self.node("Unsqueeze", &[input], |n| n.with_ints("axes", axes))
        }
    }

    pub(crate) fn doubles(&mut self, what: &str, dims: &[i64], values: &[f64]) -> String {
        self.initializer(what, |name| TensorProto::doubles(name, dims, values))
    }

    /// Rows scaled to unit length, as [`crate::pooling::l2_normalize`] does.
    pub(crate) fn l2_normalize(&mut self, x: &str) -> String {
        let squares = self.node("Mul", &[x, x], |n| n);
        let sum = self.reduce("ReduceSum", &squares, &[1], true);
        let norm = self.node("Sqrt", &[&sum], |n| n);
        let floor = self.floats("epsilon", &[], &[1e-12]);
        let norm = self.node("Max", &[&norm, &floor], |n| n);
        self.node("Div", &[x, &norm], |n| n)
    }

    /// The `k` largest values of each row of `x` and their column indices ([N, k] each).
    pub(crate) fn top_k(&mut self, x: &str, k: usize, what: &str) -> (String, String) {
        let (values, indices) = (
            self.name(&format!("{what}_topk_values")),
            self.name(&format!("{what}_topk_indices")),
        );
        // k is an input from opset 10, an attribute before; the default is the k largest.
        let node = if self.opset >= 10 {
            let count = self.int64s(&format!("{what}_k"), &[1], &[k as i64]);
            NodeProto::new("TopK", &[x, &count], &[&values, &indices])
        } else {
            NodeProto::new("TopK", &[x], &[&values, &indices]).with_int("k", k as i64)
        };
        self.graph.node.push(node);
        (values, indices)
    }
}
