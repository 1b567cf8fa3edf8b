//! Page headers walked before the parquet crate decodes a column chunk. The crate trusts what a header
//! declares: a dictionary of 2³¹ values is allocated whole, a snappy page is zero-filled to its declared size,
//! and run-length encoding lets a kilobyte declare a billion values. So every page header of a chunk is read
//! here first (thrift compact protocol, only the fields that size the work) and checked against the bytes
//! present and the rows the group declares; the crate only sees chunks that passed.

use std::io::Read;

use parquet::basic::{Compression, Type as PhysicalType};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::ChunkReader;

/// Values (levels) a file may declare beyond one per byte of the file: enough for any real embeddings
/// (at least two bytes each in a file), few enough that decoding them costs at most a few hundred MB.
const FREE_VALUES: u64 = 4 << 20;

/// Snappy, the one codec built in, expands at most 21.3× (a 3-byte copy of 64 bytes); beyond this the
/// declared size is a lie that would be zero-filled before decompressing.
const MAX_EXPANSION: u64 = 24;

/// Structs inside a page header nest two deep; a header nesting deeper is not one.
const MAX_DEPTH: usize = 8;

/// How many values the whole file may declare, shared by all its chunks.
pub(super) struct ValueBudget {
    left: u64,
}

impl ValueBudget {
    pub(super) fn for_file(file_len: u64) -> Self {
        Self {
            left: FREE_VALUES.saturating_add(file_len),
        }
    }
}

/// Checks every page header of one column chunk of a group of `rows` rows: an error says what it declares
/// that the file cannot hold.
pub(super) fn check_chunk<R: ChunkReader>(
    file: &R,
    chunk: &ColumnChunkMetaData,
    rows: u64,
    budget: &mut ValueBudget,
) -> Result<(), String> {
    let start = chunk
        .dictionary_page_offset()
        .unwrap_or(chunk.data_page_offset());
    let len = chunk.compressed_size();
    let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) else {
        return Err("a negative offset or size".into());
    };
    if start.checked_add(len).is_none_or(|end| end > file.len()) {
        return Err(format!(
            "declares {len} bytes at offset {start}, past the end of the file"
        ));
    }
    let descriptor = chunk.column_descr();
    let lists = descriptor.max_rep_level() > 0;
    let min_value_bytes = match descriptor.physical_type() {
        // A boolean is one bit: eight to a byte.
        PhysicalType::BOOLEAN => 0,
        PhysicalType::INT64 | PhysicalType::DOUBLE => 8,
        PhysicalType::INT96 => 12,
        PhysicalType::FIXED_LEN_BYTE_ARRAY => u64::try_from(descriptor.type_length()).unwrap_or(1),
        // INT32 and FLOAT; a BYTE_ARRAY has a 4-byte length before each value.
        _ => 4,
    };
    let compressed = chunk.compression() != Compression::UNCOMPRESSED;
    let mut levels: u64 = 0;
    let mut offset = 0;
    while offset < len {
        let reader = file
            .get_read(start + offset)
            .map_err(|e| format!("cannot read its pages ({e})"))?;
        let mut thrift = Thrift {
            input: reader.take(len - offset),
            read: 0,
        };
        let header = thrift.page_header()?;
        offset += thrift.read;
        let body = len - offset;
        if header.compressed_size > body {
            return Err(format!(
                "a page declares {} bytes where {body} are left",
                header.compressed_size
            ));
        }
        offset += header.compressed_size;
        if compressed && header.uncompressed_size > header.compressed_size * MAX_EXPANSION + 1024 {
            return Err(format!(
                "a page of {} bytes declares {} once decompressed",
                header.compressed_size, header.uncompressed_size
            ));
        }
        let page_bytes = if compressed {
            header.uncompressed_size
        } else {
            header.compressed_size
        };
        match header.kind {
            PageKind::Dictionary => {
                let needed = match min_value_bytes {
                    0 => header.num_values.div_ceil(8),
                    bytes => header.num_values.saturating_mul(bytes),
                };
                if needed > page_bytes {
                    return Err(format!(
                        "a dictionary page declares {} values in {page_bytes} bytes",
                        header.num_values
                    ));
                }
            }
            PageKind::Data => levels = levels.saturating_add(header.num_values),
            PageKind::Other => {}
        }
    }
    if levels > budget.left {
        return Err(format!(
            "declares {levels} values, more than a file of its size can hold"
        ));
    }
    budget.left -= levels;
    // A column that is not a list has one value per row; a list column at least one level per row.
    if (!lists && levels != rows) || (lists && levels < rows) {
        return Err(format!("declares {levels} values for {rows} rows"));
    }
    Ok(())
}

enum PageKind {
    Data,
    Dictionary,
    Other,
}

struct PageHeader {
    kind: PageKind,
    uncompressed_size: u64,
    compressed_size: u64,
    num_values: u64,
}

/// Thrift's compact protocol over a bounded reader: every read takes at least one byte or fails, so a walk
/// ends at the chunk's end at the latest.
struct Thrift<R> {
    input: R,
    read: u64,
}

/// Compact protocol field and element types.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// How an element of a list, set or map of `kind` is encoded: a boolean there is a byte of its own.
fn element(kind: u8) -> u8 {
    match kind {
        BOOL_TRUE | BOOL_FALSE => BYTE,
        other => other,
    }
}

impl<R: Read> Thrift<R> {
    fn byte(&mut self) -> Result<u8, String> {
        let mut byte = [0u8];
        self.input
            .read_exact(&mut byte)
            .map_err(|_| "a page header runs past the end of its column chunk".to_string())?;
        self.read += 1;
        Ok(byte[0])
    }

    fn skip(&mut self, bytes: u64) -> Result<(), String> {
        let skipped = std::io::copy(&mut (&mut self.input).take(bytes), &mut std::io::sink())
            .map_err(|e| format!("cannot read its pages ({e})"))?;
        self.read += skipped;
        if skipped < bytes {
            return Err("a page runs past the end of its column chunk".into());
        }
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift.min(63);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a page header holds a malformed number".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let raw = self.varint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// A field header: `None` at the struct's end, else (field id, type). Ids may only be given as deltas
    /// or as a following i16, as the protocol says.
    fn field(&mut self, last: i16) -> Result<Option<(i16, u8)>, String> {
        let byte = self.byte()?;
        let kind = byte & 0x0f;
        if kind == 0 {
            return Ok(None);
        }
        let delta = i16::from(byte >> 4);
        let id = match delta {
            0 => i16::try_from(self.zigzag()?).map_err(|_| "a bad field id")?,
            delta => last.saturating_add(delta),
        };
        Ok(Some((id, kind)))
    }

    /// A non-negative i32 that sizes something.
    fn size(&mut self) -> Result<u64, String> {
        let value = self.zigzag()?;
        if !(0..=i64::from(i32::MAX)).contains(&value) {
            return Err(format!("a page header declares a size of {value}"));
        }
        Ok(value as u64)
    }

    fn skip_value(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("a page header nests too deep".into());
        }
        match kind {
            // A boolean field's value is in its field header.
            BOOL_TRUE | BOOL_FALSE => {}
            BYTE => {
                self.byte()?;
            }
            I16 | I32 | I64 => {
                self.varint()?;
            }
            DOUBLE => self.skip(8)?,
            BINARY => {
                let len = self.varint()?;
                self.skip(len)?;
            }
            LIST | SET => {
                let header = self.byte()?;
                let count = match header >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                for _ in 0..count {
                    self.skip_value(element(header & 0x0f), depth + 1)?;
                }
            }
            MAP => {
                let count = self.varint()?;
                if count > 0 {
                    let types = self.byte()?;
                    for _ in 0..count {
                        self.skip_value(element(types >> 4), depth + 1)?;
                        self.skip_value(element(types & 0x0f), depth + 1)?;
                    }
                }
            }
            STRUCT => self.skip_struct(depth + 1)?,
            other => return Err(format!("a page header holds an unknown type {other}")),
        }
        Ok(())
    }

    fn skip_struct(&mut self, depth: usize) -> Result<(), String> {
        let mut last = 0;
        while let Some((id, kind)) = self.field(last)? {
            self.skip_value(kind, depth)?;
            last = id;
        }
        Ok(())
    }

    /// A nested page header (data, dictionary or data v2): its `num_values`, field 1.
    fn num_values(&mut self) -> Result<u64, String> {
        let mut last = 0;
        let mut num_values = None;
        while let Some((id, kind)) = self.field(last)? {
            match (id, kind) {
                (1, I32) => num_values = Some(self.size()?),
                _ => self.skip_value(kind, 1)?,
            }
            last = id;
        }
        num_values.ok_or_else(|| "a page header without its value count".to_string())
    }

    fn page_header(&mut self) -> Result<PageHeader, String> {
        let (mut kind, mut uncompressed, mut compressed, mut num_values) = (None, None, None, 0);
        let mut last = 0;
        while let Some((id, field)) = self.field(last)? {
            match (id, field) {
                (1, I32) => kind = Some(self.zigzag()?),
                (2, I32) => uncompressed = Some(self.size()?),
                (3, I32) => compressed = Some(self.size()?),
                (5 | 7 | 8, STRUCT) => num_values = self.num_values()?,
                _ => self.skip_value(field, 0)?,
            }
            last = id;
        }
        let (Some(kind), Some(uncompressed_size), Some(compressed_size)) =
            (kind, uncompressed, compressed)
        else {
            return Err("a page header without its type and sizes".into());
        };
        Ok(PageHeader {
            kind: match kind {
                0 | 3 => PageKind::Data,
                2 => PageKind::Dictionary,
                _ => PageKind::Other,
            },
            uncompressed_size,
            compressed_size,
            num_values,
        })
    }
}
