//! The subset of ONNX's protobuf messages headstart reads and writes (field numbers from onnx.proto).
//! Hand-written prost messages, so building needs no `protoc`. Fields not listed are skipped when reading.

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    pub domain: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    /// AttributeType: FLOAT = 1, INT = 2, STRING = 3, TENSOR = 4, FLOATS = 6, INTS = 7.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    /// Subgraphs (If, Loop, Scan): read so rewriting code can tell they are there.
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// DataType: FLOAT = 1, UINT8 = 2, INT32 = 6, INT64 = 7, FLOAT16 = 10.
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Dimension {
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    pub value: Option<DimensionValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum DimensionValue {
    #[prost(int64, tag = "1")]
    DimValue(i64),
    #[prost(string, tag = "2")]
    DimParam(String),
}

pub const FLOAT: i32 = 1;
pub const UINT8: i32 = 2;
pub(crate) const INT8: i32 = 3;
pub const INT32: i32 = 6;
pub const INT64: i32 = 7;
pub(crate) const BOOL: i32 = 9;
pub const FLOAT16: i32 = 10;
pub(crate) const DOUBLE: i32 = 11;
pub(crate) const ATTRIBUTE_INT: i32 = 2;
pub(crate) const ATTRIBUTE_INTS: i32 = 7;

impl ValueInfoProto {
    /// A tensor value: `dims` entries that are `None` are dynamic (named `d0`, `d1`, ...).
    pub fn tensor(name: &str, elem_type: i32, dims: &[Option<i64>]) -> Self {
        let dim = dims
            .iter()
            .enumerate()
            .map(|(i, d)| Dimension {
                value: Some(match d {
                    Some(v) => DimensionValue::DimValue(*v),
                    None => DimensionValue::DimParam(format!("d{i}")),
                }),
            })
            .collect();
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type,
                    shape: Some(TensorShapeProto { dim }),
                }),
            }),
        }
    }
}

impl NodeProto {
    pub fn new(op_type: &str, inputs: &[&str], outputs: &[&str]) -> Self {
        NodeProto {
            op_type: op_type.into(),
            name: outputs
                .first()
                .map(|o| format!("{op_type}_{o}"))
                .unwrap_or_default(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    pub(crate) fn with_ints(mut self, name: &str, values: &[i64]) -> Self {
        self.attribute.push(AttributeProto {
            name: name.into(),
            r#type: ATTRIBUTE_INTS,
            ints: values.to_vec(),
            ..Default::default()
        });
        self
    }

    pub(crate) fn with_int(mut self, name: &str, value: i64) -> Self {
        self.attribute.push(AttributeProto {
            name: name.into(),
            r#type: ATTRIBUTE_INT,
            i: value,
            ..Default::default()
        });
        self
    }
}

impl TensorProto {
    pub(crate) fn int64s(name: &str, dims: &[i64], values: &[i64]) -> Self {
        Self::raw(
            name,
            dims,
            INT64,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    pub(crate) fn doubles(name: &str, dims: &[i64], values: &[f64]) -> Self {
        Self::raw(
            name,
            dims,
            DOUBLE,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    pub fn floats(name: &str, dims: &[i64], values: &[f32]) -> Self {
        Self::raw(
            name,
            dims,
            FLOAT,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    pub(crate) fn int8s(name: &str, dims: &[i64], values: &[i8]) -> Self {
        Self::raw(name, dims, INT8, values.iter().map(|v| *v as u8).collect())
    }

    pub(crate) fn uint8s(name: &str, dims: &[i64], values: &[u8]) -> Self {
        Self::raw(name, dims, UINT8, values.to_vec())
    }

    pub(crate) fn int32s(name: &str, dims: &[i64], values: &[i32]) -> Self {
        Self::raw(
            name,
            dims,
            INT32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    /// A float tensor's values, from raw bytes or the repeated field; `None` for another type.
    pub(crate) fn float_values(&self) -> Option<Vec<f32>> {
        if self.data_type != FLOAT {
            return None;
        }
        if self.raw_data.is_empty() {
            return Some(self.float_data.clone());
        }
        Some(
            self.raw_data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// A tensor of `data_type` whose values are given as little-endian bytes.
    fn raw(name: &str, dims: &[i64], data_type: i32, raw_data: Vec<u8>) -> Self {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type,
            raw_data,
            ..Default::default()
        }
    }
}

impl ModelProto {
    /// A model around `graph` with the default-domain opset `opset`.
    pub fn new(graph: GraphProto, opset: i64) -> Self {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            producer_name: "headstart".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(graph),
            ..Default::default()
        }
    }
}
