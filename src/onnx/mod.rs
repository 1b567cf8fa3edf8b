//! Reading ONNX files: a summary for `inspect`, validation of tensor names, tapping intermediate tensors as
//! extra graph outputs, and a float16 copy for CUDA.

pub(crate) mod builder;
pub(crate) mod external;
pub(crate) mod fp16;
pub(crate) mod int8;
pub mod proto;
pub mod splice;
pub(crate) mod taps;

use std::path::Path;

use prost::Message;

use crate::error::{Error, Result};
use proto::{GraphProto, ModelProto, ValueInfoProto};

/// A protobuf message, and so an ONNX file, is under 2 GiB.
pub(crate) const MAX_MODEL_BYTES: u64 = (2 << 30) - 1;

/// What `inspect` shows beyond ONNX Runtime's inputs and outputs.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    pub ir_version: i64,
    /// (domain, version); the default domain is shown as `ai.onnx`.
    pub opsets: Vec<(String, i64)>,
    pub producer: String,
    pub node_count: usize,
    pub initializer_count: usize,
    /// Every tensor a node produces, in graph order, with the op that produces it: candidates for `--layer`.
    pub tensors: Vec<(String, String)>,
    pub graph_outputs: Vec<String>,
}

/// Reads an ONNX file, with errors that say which file and what is wrong with it.
pub(crate) fn read_model_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => Error::ModelNotFound {
            path: path.to_path_buf(),
        },
        _ => Error::io(path, e),
    };
    // Looked at before opening: opening a FIFO waits for a writer, and a device never ends.
    if !std::fs::metadata(path).map_err(failed)?.is_file() {
        return Err(Error::model(path, "not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(Error::model(
            path,
            "over 2 GiB: an ONNX file is one protobuf message, which cannot be larger (keep large weights as external data)",
        ));
    }
    Ok(bytes)
}

/// Parses and summarises a model. A file that is not a complete ONNX model is an error.
pub(crate) fn summarize(path: &Path, bytes: &[u8]) -> Result<ModelSummary> {
    let model = ModelProto::decode(bytes).map_err(|e| {
        Error::model(
            path,
            format!("not a valid ONNX model (truncated or corrupt?): {e}"),
        )
    })?;
    let graph = model
        .graph
        .ok_or_else(|| Error::model(path, "not a valid ONNX model: it has no graph"))?;
    if graph.node.is_empty() && graph.output.is_empty() {
        return Err(Error::model(
            path,
            "not a valid ONNX model: its graph is empty",
        ));
    }
    Ok(ModelSummary {
        ir_version: model.ir_version,
        opsets: model
            .opset_import
            .into_iter()
            .map(|o| {
                (
                    if o.domain.is_empty() {
                        "ai.onnx".into()
                    } else {
                        o.domain
                    },
                    o.version,
                )
            })
            .collect(),
        producer: [model.producer_name, model.producer_version]
            .join(" ")
            .trim()
            .to_string(),
        node_count: graph.node.len(),
        initializer_count: graph.initializer.len(),
        tensors: graph
            .node
            .iter()
            .flat_map(|n| {
                n.output
                    .iter()
                    .filter(|o| !o.is_empty())
                    .map(|o| (o.clone(), n.op_type.clone()))
            })
            .collect(),
        graph_outputs: graph.output.into_iter().map(|o| o.name).collect(),
    })
}

/// Returns the model with `names` added to its graph outputs, so ONNX Runtime returns those intermediate
/// tensors too. Protobuf merges a repeated sub-message appended to a serialized message, so appending
/// `graph { output { name } }` adds outputs without re-encoding (and possibly losing) anything in the model.
pub(crate) fn with_extra_outputs(bytes: &[u8], names: &[&str]) -> Vec<u8> {
    let extra = ModelProto {
        graph: Some(GraphProto {
            output: names
                .iter()
                .map(|n| ValueInfoProto {
                    name: n.to_string(),
                    r#type: None,
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(bytes.len() + 64);
    out.extend_from_slice(bytes);
    extra.encode(&mut out).expect("a Vec grows as needed");
    out
}

/// A `--layer` name that is not produced by any node gets an error that lists what to do instead.
pub(crate) fn check_tensor_exists(path: &Path, summary: &ModelSummary, name: &str) -> Result<()> {
    if summary.tensors.iter().any(|(t, _)| t == name)
        || summary.graph_outputs.iter().any(|o| o == name)
    {
        return Ok(());
    }
    let near: Vec<&str> = summary
        .tensors
        .iter()
        .map(|(t, _)| t.as_str())
        .filter(|t| t.to_lowercase().contains(&name.to_lowercase()))
        .take(3)
        .collect();
    Err(Error::TensorNotFound {
        path: path.to_path_buf(),
        name: name.to_string(),
        similar: near.into_iter().map(str::to_string).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{FLOAT, NodeProto};

    fn two_relu_model() -> Vec<u8> {
        let graph = GraphProto {
            name: "g".into(),
            node: vec![
                NodeProto::new("Relu", &["x"], &["hidden"]),
                NodeProto::new("Neg", &["hidden"], &["y"]),
            ],
            input: vec![ValueInfoProto::tensor("x", FLOAT, &[None, Some(4)])],
            output: vec![ValueInfoProto::tensor("y", FLOAT, &[None, Some(4)])],
            ..Default::default()
        };
        ModelProto::new(graph, 13).encode_to_vec()
    }

    #[test]
    fn extra_outputs_are_merged_into_the_graph() {
        let tapped = with_extra_outputs(&two_relu_model(), &["hidden"]);
        let model = ModelProto::decode(tapped.as_slice()).unwrap();
        let graph = model.graph.unwrap();
        let outputs: Vec<_> = graph.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outputs, ["y", "hidden"]);
        assert_eq!(graph.node.len(), 2, "nodes are kept");
        assert_eq!(model.opset_import[0].version, 13, "model fields are kept");
    }

    #[test]
    fn summary_lists_tensors_and_rejects_garbage() {
        let path = Path::new("m.onnx");
        let summary = summarize(path, &two_relu_model()).unwrap();
        assert_eq!(summary.opsets, [("ai.onnx".to_string(), 13)]);
        assert_eq!(
            summary.tensors,
            [("hidden".into(), "Relu".into()), ("y".into(), "Neg".into())]
        );
        assert!(check_tensor_exists(path, &summary, "hidden").is_ok());
        let err = check_tensor_exists(path, &summary, "hid")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no tensor named 'hid'") && err.contains("similar: hidden"),
            "{err}"
        );
        assert!(summarize(path, b"").is_err());
        assert!(summarize(path, b"this is not protobuf at all").is_err());
        let truncated = &two_relu_model()[..20];
        assert!(summarize(path, truncated).is_err());
    }
}
