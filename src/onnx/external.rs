//! External data: an initializer whose bytes live in another file, named relative to the model. ONNX
//! Runtime finds that file beside a model it loads from a path, but beside the working directory for a model
//! given as bytes (as after tapping a layer, fp16 or int8). So headstart reads external data itself, only from
//! the model's own folder, inlines it where the model is loaded from bytes, and hashes it into the identity.

use std::path::{Component, Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};

use super::proto::StringStringEntryProto;
use super::splice::{fields, length_delimited};
use crate::error::{Error, Result};

const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_RAW_DATA: u32 = 9;
const TENSOR_EXTERNAL_DATA: u32 = 13;
const TENSOR_DATA_LOCATION: u32 = 14;

/// One initializer's bytes in another file.
#[derive(Debug, Clone)]
pub(crate) struct ExternalData {
    /// Resolved inside the model's folder.
    pub file: PathBuf,
    pub offset: u64,
    /// Bytes from `offset` (to the end of the file when the model gives no length).
    pub length: u64,
}

/// The external data of `model`'s graph initializers, each checked: a relative path that stays inside the
/// model's folder (symbolic links included), to a regular file that holds the declared range.
pub(crate) fn references(path: &Path, model: &[u8]) -> Result<Vec<ExternalData>> {
    let bad = |message: String| Error::model(path, message);
    let mut found = Vec::new();
    let Some(top) = fields(model) else {
        return Ok(found);
    };
    if walk(&top, Held::Model, 0) {
        return Err(bad(
            "keeps tensors of a subgraph, a node attribute or a function in external data: headstart reads external data only for the graph's initializers".into(),
        ));
    }
    let folder = path.parent().unwrap_or(Path::new("."));
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let graphs = top.iter().filter(|f| f.number == MODEL_GRAPH);
    for graph in graphs.filter_map(|f| f.payload) {
        for initializer in fields(graph).unwrap_or_default() {
            if initializer.number != GRAPH_INITIALIZER {
                continue;
            }
            let Some(entries) = external_entries(initializer.payload.unwrap_or_default()) else {
                continue;
            };
            let get = |key: &str| {
                entries
                    .iter()
                    .find(|e| e.key == key)
                    .map(|e| e.value.as_str())
            };
            let location = get("location")
                .ok_or_else(|| bad("an initializer's external data names no file".into()))?;
            let number = |key: &str| -> Result<Option<u64>> {
                get(key)
                    .map(|v| {
                        v.parse::<u64>().map_err(|_| {
                            bad(format!(
                                "external data {location}: {key} '{v}' is not a number"
                            ))
                        })
                    })
                    .transpose()
            };
            let offset = number("offset")?.unwrap_or(0);
            let length = number("length")?;
            let file = inside(folder, location).map_err(|why| {
                bad(format!(
                    "external data '{location}' {why}: it is read only from the model's own folder"
                ))
            })?;
            let size = std::fs::metadata(&file)
                .map_err(|e| Error::io(&file, e))?
                .len();
            let end = offset.checked_add(length.unwrap_or(0));
            if offset > size || end.is_none_or(|end| end > size) {
                return Err(bad(format!(
                    "external data '{location}' declares bytes past the end of its {size}-byte file"
                )));
            }
            found.push(ExternalData {
                file,
                offset,
                length: length.unwrap_or(size - offset),
            });
        }
    }
    Ok(found)
}

/// Message fields that hold graphs, nodes, attributes and tensors (onnx.proto).
const MODEL_FUNCTIONS: u32 = 25;
const GRAPH_NODE: u32 = 1;
const GRAPH_SPARSE_INITIALIZER: u32 = 15;
const NODE_ATTRIBUTE: u32 = 5;
const FUNCTION_NODE: u32 = 7;
const ATTRIBUTE_TENSOR: u32 = 5;
const ATTRIBUTE_GRAPH: u32 = 6;
const ATTRIBUTE_TENSORS: u32 = 10;
const ATTRIBUTE_GRAPHS: u32 = 11;
const ATTRIBUTE_SPARSE_TENSOR: u32 = 22;
const ATTRIBUTE_SPARSE_TENSORS: u32 = 23;

/// Subgraphs nest; a model nesting deeper than this is refused rather than walked.
const MAX_NESTING: usize = 64;

/// What a message holds, for the walk below.
#[derive(Clone, Copy)]
enum Held {
    Model,
    Graph { top: bool },
    Node,
    Function,
    Attribute,
    SparseTensor,
}

/// Whether a tensor other than the main graph's initializers keeps its bytes in external data (or the model
/// nests too deep to tell), in the `members` of a message that holds `held`.
fn walk(members: &[super::splice::Field<'_>], held: Held, depth: usize) -> bool {
    if depth > MAX_NESTING {
        return true;
    }
    let inside = |bytes: Option<&[u8]>, held: Held| {
        fields(bytes.unwrap_or_default()).is_some_and(|m| walk(&m, held, depth + 1))
    };
    let external = |bytes: Option<&[u8]>| external_entries(bytes.unwrap_or_default()).is_some();
    members.iter().any(|f| match (held, f.number) {
        (Held::Model, MODEL_GRAPH) => inside(f.payload, Held::Graph { top: true }),
        (Held::Model, MODEL_FUNCTIONS) => inside(f.payload, Held::Function),
        (Held::Graph { .. }, GRAPH_NODE) | (Held::Function, FUNCTION_NODE) => {
            inside(f.payload, Held::Node)
        }
        (Held::Graph { top: false }, GRAPH_INITIALIZER) => external(f.payload),
        (Held::Graph { .. }, GRAPH_SPARSE_INITIALIZER) => inside(f.payload, Held::SparseTensor),
        (Held::Node, NODE_ATTRIBUTE) => inside(f.payload, Held::Attribute),
        (Held::Attribute, ATTRIBUTE_TENSOR | ATTRIBUTE_TENSORS) => external(f.payload),
        (Held::Attribute, ATTRIBUTE_GRAPH | ATTRIBUTE_GRAPHS) => {
            inside(f.payload, Held::Graph { top: false })
        }
        (Held::Attribute, ATTRIBUTE_SPARSE_TENSOR | ATTRIBUTE_SPARSE_TENSORS) => {
            inside(f.payload, Held::SparseTensor)
        }
        // A sparse tensor's values (1) and indices (2) are tensors.
        (Held::SparseTensor, 1 | 2) => external(f.payload),
        _ => false,
    })
}

/// A tensor's external-data entries, if it keeps its bytes elsewhere (`data_location` EXTERNAL).
fn external_entries(tensor: &[u8]) -> Option<Vec<StringStringEntryProto>> {
    let fields = fields(tensor)?;
    let external = fields.iter().any(|f| {
        f.number == TENSOR_DATA_LOCATION && f.encoded.last() == Some(&1) && f.payload.is_none()
    });
    external.then(|| {
        fields
            .iter()
            .filter(|f| f.number == TENSOR_EXTERNAL_DATA)
            .filter_map(|f| StringStringEntryProto::decode(f.payload?).ok())
            .collect()
    })
}

/// `location` under `folder`, refused if it is absolute, climbs out, or is a link that leads out.
fn inside(folder: &Path, location: &str) -> std::result::Result<PathBuf, &'static str> {
    let relative = Path::new(location);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("is not a plain relative path");
    }
    let root = folder.canonicalize().map_err(|_| "has no folder")?;
    let file = folder
        .join(relative)
        .canonicalize()
        .map_err(|_| "is not there")?;
    if !file.starts_with(&root) {
        return Err("leads out of the model's folder");
    }
    if !file.is_file() {
        return Err("is not a regular file");
    }
    Ok(file)
}

/// A model's sha256: of the file alone, or with external data, of the file's and then each external range's
/// sha256 (in the model's order), so changing the weights changes the identity.
pub(crate) fn identity(model: &[u8], references: &[ExternalData]) -> Result<String> {
    if references.is_empty() {
        return Ok(crate::hash::sha256_hex(model));
    }
    let mut hasher = Sha256::new();
    hasher.update(Sha256::digest(model));
    for reference in references {
        hasher.update(Sha256::digest(read(reference)?));
    }
    Ok(crate::hash::hex(&hasher.finalize()))
}

fn read(reference: &ExternalData) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let failed = |e| Error::io(&reference.file, e);
    let mut file = std::fs::File::open(&reference.file).map_err(failed)?;
    file.seek(SeekFrom::Start(reference.offset))
        .map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(reference.length)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    Ok(bytes)
}

/// `model` with every graph initializer's external bytes (`references`, in order) put inside it; as it is
/// when it has none.
pub(crate) fn inline(path: &Path, model: Vec<u8>, references: &[ExternalData]) -> Result<Vec<u8>> {
    if references.is_empty() {
        return Ok(model);
    }
    let total: u64 = model.len() as u64 + references.iter().map(|r| r.length).sum::<u64>();
    // A model loaded from bytes is one protobuf message, as a file is.
    if total > super::MAX_MODEL_BYTES {
        return Err(Error::model(
            path,
            "its external data makes it over 2 GiB, too large to tap a layer, convert to fp16 or quantise",
        ));
    }
    let malformed = || Error::model(path, "not a valid ONNX model");
    let top = fields(&model).ok_or_else(malformed)?;
    let mut pending = references.iter();
    let mut out = Vec::with_capacity(total as usize);
    for field in &top {
        if field.number != MODEL_GRAPH {
            out.extend_from_slice(field.encoded);
            continue;
        }
        let graph = field.payload.ok_or_else(malformed)?;
        let mut new_graph = Vec::with_capacity(graph.len());
        for member in fields(graph).ok_or_else(malformed)? {
            let tensor = member.payload.unwrap_or_default();
            if member.number != GRAPH_INITIALIZER || external_entries(tensor).is_none() {
                new_graph.extend_from_slice(member.encoded);
                continue;
            }
            let reference = pending.next().ok_or_else(malformed)?;
            let mut new_tensor = Vec::with_capacity(tensor.len());
            for part in fields(tensor).ok_or_else(malformed)? {
                if ![TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION, TENSOR_RAW_DATA]
                    .contains(&part.number)
                {
                    new_tensor.extend_from_slice(part.encoded);
                }
            }
            length_delimited(TENSOR_RAW_DATA, &read(reference)?, &mut new_tensor);
            length_delimited(GRAPH_INITIALIZER, &new_tensor, &mut new_graph);
        }
        length_delimited(MODEL_GRAPH, &new_graph, &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{FLOAT, GraphProto, ModelProto, NodeProto, TensorProto};

    /// A tensor whose bytes are in `weights.bin` (fields 13 and 14, which the message subset leaves out).
    fn external_tensor() -> Vec<u8> {
        let mut tensor = TensorProto::floats("w", &[1], &[]).encode_to_vec();
        let entry = StringStringEntryProto {
            key: "location".into(),
            value: "weights.bin".into(),
        };
        prost::encoding::message::encode(TENSOR_EXTERNAL_DATA, &entry, &mut tensor);
        prost::encoding::int32::encode(TENSOR_DATA_LOCATION, &1, &mut tensor);
        tensor
    }

    fn model_with_graph(graph: Vec<u8>) -> Vec<u8> {
        let mut model = ModelProto::new(GraphProto::default(), 17);
        model.graph = None;
        let mut bytes = model.encode_to_vec();
        length_delimited(MODEL_GRAPH, &graph, &mut bytes);
        bytes
    }

    #[test]
    fn external_data_outside_the_initializers_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("weights.bin"), [0u8; 4]).unwrap();
        let path = dir.path().join("model.onnx");
        // A Constant node whose `value` attribute (a tensor, field 5) is external.
        let mut attribute = Vec::new();
        prost::encoding::string::encode(1, &"value".to_string(), &mut attribute);
        length_delimited(ATTRIBUTE_TENSOR, &external_tensor(), &mut attribute);
        let mut node = NodeProto::new("Constant", &[], &["c"]).encode_to_vec();
        length_delimited(NODE_ATTRIBUTE, &attribute, &mut node);
        let mut graph = Vec::new();
        length_delimited(GRAPH_NODE, &node, &mut graph);
        let error = references(&path, &model_with_graph(graph)).unwrap_err();
        assert!(error.to_string().contains("node attribute"), "{error}");

        // The same tensor as an initializer of the main graph is read.
        let mut graph = GraphProto {
            node: vec![NodeProto::new("Identity", &["w"], &["y"])],
            ..Default::default()
        }
        .encode_to_vec();
        length_delimited(GRAPH_INITIALIZER, &external_tensor(), &mut graph);
        let model = model_with_graph(graph);
        let found = references(&path, &model).unwrap();
        assert_eq!(found.len(), 1);
        let inlined = inline(&path, model, &found).unwrap();
        let parsed = ModelProto::decode(inlined.as_slice()).unwrap();
        let tensor = &parsed.graph.unwrap().initializer[0];
        assert_eq!((tensor.data_type, tensor.raw_data.len()), (FLOAT, 4));
        assert!(references(&path, &inlined).unwrap().is_empty());
    }

    #[test]
    fn graphs_nested_without_end_are_refused_not_walked() {
        // A graph whose node's attribute holds a graph, and so on, 100 deep.
        let mut graph = Vec::new();
        for _ in 0..100 {
            let mut attribute = Vec::new();
            length_delimited(ATTRIBUTE_GRAPH, &graph, &mut attribute);
            let mut node = Vec::new();
            length_delimited(NODE_ATTRIBUTE, &attribute, &mut node);
            graph = Vec::new();
            length_delimited(GRAPH_NODE, &node, &mut graph);
        }
        let path = Path::new("deep.onnx");
        assert!(references(path, &model_with_graph(graph)).is_err());
    }
}
