//! Editing a serialized model without decoding all of it: top-level fields are walked as raw protobuf, so
//! everything headstart's message subset does not know (value_info, functions, subgraphs, external-data
//! markers, ...) is copied byte for byte. Only the fields being replaced are touched.

use prost::Message;

use super::proto::{GraphProto, NodeProto, StringStringEntryProto, ValueInfoProto};

const MODEL_GRAPH: u32 = 7;
const MODEL_METADATA: u32 = 14;
const GRAPH_INPUT: u32 = 11;
const GRAPH_OUTPUT: u32 = 12;

/// One field of a message: its number and its whole encoding (key included).
pub(super) struct Field<'a> {
    pub number: u32,
    pub encoded: &'a [u8],
    /// The payload of a length-delimited field.
    pub payload: Option<&'a [u8]>,
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The fields of a message, in order; `None` if the bytes are not a well-formed message.
pub(super) fn fields(bytes: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let key = varint(bytes, &mut at)?;
        let number = u32::try_from(key >> 3).ok()?;
        let payload = match key & 7 {
            0 => {
                varint(bytes, &mut at)?;
                None
            }
            1 => {
                at = at.checked_add(8)?;
                None
            }
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).ok()?;
                let end = at.checked_add(len)?;
                let payload = bytes.get(at..end)?;
                at = end;
                Some(payload)
            }
            5 => {
                at = at.checked_add(4)?;
                None
            }
            _ => return None,
        };
        if at > bytes.len() {
            return None;
        }
        out.push(Field {
            number,
            encoded: &bytes[start..at],
            payload,
        });
    }
    Some(out)
}

pub(super) fn length_delimited(number: u32, payload: &[u8], out: &mut Vec<u8>) {
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// What to change in a model's graph and metadata.
pub(crate) struct GraphEdit<'a> {
    /// Graph inputs to remove (they become tensors computed by `additions`).
    pub drop_inputs: &'a [String],
    /// Remove every existing graph output.
    pub drop_outputs: bool,
    /// Nodes placed before the graph's own: they compute tensors its nodes consume (a graph's nodes must be in
    /// topological order, which ONNX Runtime does not check but other runtimes and the ONNX checker do).
    pub before: Vec<NodeProto>,
    /// Nodes, initializers, inputs and outputs appended to the graph.
    pub additions: GraphProto,
    /// Metadata entries; existing entries with the same keys are replaced.
    pub metadata: Vec<StringStringEntryProto>,
}

/// Applies `edit` to a serialized model. `None` if the bytes are not a model with a graph.
pub(crate) fn edit_model(model: &[u8], edit: &GraphEdit) -> Option<Vec<u8>> {
    let top = fields(model)?;
    // Protobuf merges repeated occurrences of a message field: the graph is all of them, in order.
    let graph: Vec<u8> = top
        .iter()
        .filter(|f| f.number == MODEL_GRAPH)
        .map(|f| f.payload.unwrap_or_default())
        .collect::<Vec<_>>()
        .concat();
    if graph.is_empty() {
        return None;
    }
    let mut new_graph = Vec::with_capacity(graph.len() + edit.additions.encoded_len());
    // Repeated fields keep the order they are written in: these nodes come first.
    GraphProto {
        node: edit.before.clone(),
        ..Default::default()
    }
    .encode(&mut new_graph)
    .ok()?;
    for field in fields(&graph)? {
        let keep = match field.number {
            GRAPH_OUTPUT => !edit.drop_outputs,
            GRAPH_INPUT => {
                let name = ValueInfoProto::decode(field.payload?).ok()?.name;
                !edit.drop_inputs.contains(&name)
            }
            _ => true,
        };
        if keep {
            new_graph.extend_from_slice(field.encoded);
        }
    }
    edit.additions.encode(&mut new_graph).ok()?;

    let replaced: Vec<&str> = edit.metadata.iter().map(|m| m.key.as_str()).collect();
    let mut out = Vec::with_capacity(new_graph.len() + model.len() - graph.len() + 1024);
    let mut graph_written = false;
    for field in &top {
        match field.number {
            MODEL_GRAPH if !graph_written => {
                length_delimited(MODEL_GRAPH, &new_graph, &mut out);
                graph_written = true;
            }
            MODEL_GRAPH => {}
            MODEL_METADATA => {
                let entry = StringStringEntryProto::decode(field.payload?).ok()?;
                if !replaced.contains(&entry.key.as_str()) {
                    out.extend_from_slice(field.encoded);
                }
            }
            _ => out.extend_from_slice(field.encoded),
        }
    }
    for entry in &edit.metadata {
        length_delimited(MODEL_METADATA, &entry.encode_to_vec(), &mut out);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{FLOAT, ModelProto};

    #[test]
    fn replaces_outputs_and_inputs_and_keeps_unknown_fields() {
        let graph = GraphProto {
            node: vec![NodeProto::new("Relu", &["x"], &["y"])],
            input: vec![ValueInfoProto::tensor("x", FLOAT, &[None, Some(2)])],
            output: vec![ValueInfoProto::tensor("y", FLOAT, &[None, Some(2)])],
            ..Default::default()
        };
        let mut bytes = ModelProto::new(graph, 17).encode_to_vec();
        // A field the subset does not know (ModelProto.functions = 25) must survive.
        length_delimited(25, b"opaque", &mut bytes);
        let edit = GraphEdit {
            drop_inputs: &["x".to_string()],
            drop_outputs: true,
            before: vec![NodeProto::new("Identity", &["raw"], &["x"])],
            additions: GraphProto {
                node: vec![NodeProto::new("Neg", &["y"], &["z"])],
                input: vec![ValueInfoProto::tensor("raw", FLOAT, &[None, Some(2)])],
                output: vec![ValueInfoProto::tensor("z", FLOAT, &[None, Some(2)])],
                ..Default::default()
            },
            metadata: vec![StringStringEntryProto {
                key: "k".into(),
                value: "v".into(),
            }],
        };
        let edited = edit_model(&bytes, &edit).unwrap();
        let model = ModelProto::decode(edited.as_slice()).unwrap();
        let graph = model.graph.unwrap();
        let names = |v: &[ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&graph.input), ["raw"]);
        assert_eq!(names(&graph.output), ["z"]);
        // In topological order: what makes x, the graph's own Relu, then what reads y.
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Identity", "Relu", "Neg"]);
        assert_eq!(model.metadata_props[0].value, "v");
        assert!(fields(&edited).unwrap().iter().any(|f| f.number == 25));
        assert!(edit_model(&bytes[..bytes.len() / 2], &edit).is_none());
    }
}
