//! Files from strangers: crafted Parquet files, a long text, a JPEG of thousands of scans, a model whose
//! external data points elsewhere, bundles naming a FIFO or a device, a cache root holding the user's own
//! folders, and inputs that used to give silent wrong results. Each gets one clear `error:` line or a counted
//! skip, run under an address-space limit where reading what a file declares would abort instead.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use common::onnx_proto::{
    FLOAT, GraphProto, ModelProto, NodeProto, StringStringEntryProto, TensorProto, ValueInfoProto,
};
use common::{headstart, headstart_json_in_home, headstart_ok, headstart_peak_memory};
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::{ColumnWriter, get_column_writer};
use parquet::data_type::ByteArray;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::parser::parse_message_type;
use prost::Message;

/// Runs the binary under `ulimit -v` of `limit_mib` (an allocation past it fails, and the allocator's failure
/// is an abort), with `timeout` guarding against a hang (not a speed check).
fn limited(limit_mib: u64, args: &[&str]) -> (i32, String, String) {
    let output = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -v {} && exec timeout 300 \"$0\" \"$@\"",
                limit_mib * 1024
            ),
        ])
        .arg(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The one-line `error:` a refused input gets.
fn assert_one_error_line(what: &str, (code, _, stderr): &(i32, String, String), says: &str) {
    assert_eq!(*code, 1, "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(says),
        "{what}: expected '{says}' in {stderr}"
    );
}

/// With `HEADSTART_WRITE_FUZZ_SEEDS` set, a crafted file is also written as a seed of fuzz target `target`
/// (`fuzz/seeds/TARGET/refused.NAME`, which `tests/fuzz_seeds.rs` expects refused).
fn seed(target: &str, name: &str, bytes: &[u8]) {
    if std::env::var_os("HEADSTART_WRITE_FUZZ_SEEDS").is_some() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target)
            .join(format!(
                "refused.{}",
                name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "-")
            ));
        std::fs::write(path, bytes).unwrap();
    }
}

// ---- Parquet -------------------------------------------------------------------------------------------------

/// headstart's embedding schema (src/embeddings/parquet).
const SCHEMA: &str = "
message headstart_embeddings {
  required binary path (STRING);
  optional binary label (STRING);
  required boolean augmented;
  optional group embedding (LIST) {
    repeated group list {
      required float element;
    }
  }
  optional binary skipped (STRING);
}";
const EMBEDDING: usize = 3;

/// What is done to each page before it is written: (column, page, uncompressed size) → what is written.
type Tamper = dyn Fn(usize, Page, usize) -> (Page, usize) + Sync;

struct Tampering<'a> {
    inner: SerializedPageWriter<'a, Vec<u8>>,
    column: usize,
    tamper: &'a Tamper,
}

impl PageWriter for Tampering<'_> {
    fn write_page(&mut self, page: CompressedPage) -> parquet::errors::Result<PageWriteSpec> {
        let size = page.uncompressed_size();
        let (page, size) = (self.tamper)(self.column, page.compressed_page().clone(), size);
        self.inner.write_page(CompressedPage::new(page, size))
    }

    fn close(&mut self) -> parquet::errors::Result<()> {
        self.inner.close()
    }
}

/// A Parquet file of `rows` text embeddings (`dim` values each, labels a and b in turn) as headstart writes
/// them, its metadata naming `backbone_source`, each page passed through `tamper` on its way to the file.
fn parquet_file(
    rows: usize,
    dim: usize,
    compression: Compression,
    dictionary: bool,
    backbone_source: &str,
    tamper: &Tamper,
) -> Vec<u8> {
    let schema = Arc::new(parse_message_type(SCHEMA).unwrap());
    let metadata = [
        ("backbone", "stranger"),
        ("backbone_source", backbone_source),
        ("backbone_sha256", "00"),
        (
            "backbone_config",
            r#"{"name":"stranger","sha256":"00","output":"last_hidden_state","layer":null,"pooling":"mean","normalize":true}"#,
        ),
        ("text_input", r#"{"tokenizer_sha256":"00","max_length":256}"#),
    ]
    .map(|(k, v)| KeyValue::new(format!("headstart.{k}"), v.to_string()))
    .to_vec();
    let properties = Arc::new(
        WriterProperties::builder()
            .set_key_value_metadata(Some(metadata))
            .set_compression(compression)
            .set_dictionary_enabled(dictionary)
            .build(),
    );
    let mut file = SerializedFileWriter::new(Vec::new(), schema, properties.clone()).unwrap();
    let columns: Vec<_> = (0..5).map(|i| file.schema_descr().column(i)).collect();
    let mut group = file.next_row_group().unwrap();
    for (index, column) in columns.into_iter().enumerate() {
        let mut sink = TrackedWrite::new(Vec::new());
        let pages = Box::new(Tampering {
            inner: SerializedPageWriter::new(&mut sink),
            column: index,
            tamper,
        });
        let text = |s: String| ByteArray::from(s.into_bytes());
        let closed = match get_column_writer(column, properties.clone(), pages) {
            ColumnWriter::ByteArrayColumnWriter(mut w) => {
                let (values, levels): (Vec<ByteArray>, Option<Vec<i16>>) = match index {
                    0 => ((0..rows).map(|i| text(format!("text{i}"))).collect(), None),
                    1 => (
                        (0..rows).map(|i| text(["a", "b"][i % 2].into())).collect(),
                        Some(vec![1; rows]),
                    ),
                    _ => (Vec::new(), Some(vec![0; rows])),
                };
                w.write_batch(&values, levels.as_deref(), None).unwrap();
                w.close().unwrap()
            }
            ColumnWriter::BoolColumnWriter(mut w) => {
                w.write_batch(&vec![false; rows], None, None).unwrap();
                w.close().unwrap()
            }
            ColumnWriter::FloatColumnWriter(mut w) => {
                let values: Vec<f32> = (0..rows * dim)
                    .map(|i| ((i / dim) % 2) as f32 + (i % dim) as f32 * 0.25)
                    .collect();
                let repetitions: Vec<i16> =
                    (0..values.len()).map(|i| i16::from(i % dim != 0)).collect();
                w.write_batch(&values, Some(&vec![2; values.len()]), Some(&repetitions))
                    .unwrap();
                w.close().unwrap()
            }
            _ => unreachable!("the schema has no other types"),
        };
        let bytes = Bytes::from(sink.into_inner().unwrap());
        group.append_column(&bytes, closed).unwrap();
    }
    group.close().unwrap();
    file.into_inner().unwrap()
}

fn untouched(_: usize, page: Page, size: usize) -> (Page, usize) {
    (page, size)
}

/// Trains `dir/NAME.hs` (with `extra` flags) on 40 crafted text embeddings, `dir/NAME.parquet`, whose
/// metadata names `backbone_source`; returns (table, bundle).
fn bundle_from_embeddings(
    dir: &Path,
    name: &str,
    backbone_source: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf) {
    let table = dir.join(format!("{name}.parquet"));
    let bytes = parquet_file(
        40,
        EMBEDDING,
        Compression::SNAPPY,
        false,
        backbone_source,
        &untouched,
    );
    std::fs::write(&table, bytes).unwrap();
    let bundle = dir.join(format!("{name}.hs"));
    let args = [
        "train",
        table.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "-q",
    ];
    headstart_ok(&[&args[..], extra].concat());
    (table, bundle)
}

/// A dictionary page (of the column `chosen` says) claiming 2³¹−1 values.
fn huge_dictionary(chosen: bool, page: Page, size: usize) -> (Page, usize) {
    match page {
        Page::DictionaryPage {
            buf,
            encoding,
            is_sorted,
            ..
        } if chosen => (
            Page::DictionaryPage {
                buf,
                num_values: i32::MAX as u32,
                encoding,
                is_sorted,
            },
            size,
        ),
        other => (other, size),
    }
}

/// One run of the hybrid RLE / bit-packing encoding: `count` times `value` (one byte wide).
fn rle_run(count: u64, value: u8, out: &mut Vec<u8>) {
    let mut header = count << 1;
    while header >= 0x80 {
        out.push((header as u8) | 0x80);
        header >>= 7;
    }
    out.push(header as u8);
    out.push(value);
}

/// Levels as a v1 data page holds them: their byte length, then the runs.
fn levels(runs: &[(u64, u8)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(count, value) in runs {
        rle_run(count, value, &mut body);
    }
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend(body);
    out
}

/// Reads `file` as `train` does, under 1 GiB: a file declaring gigabytes must be refused before it is decoded.
fn train_refuses(what: &str, file: &Path, says: &str) {
    let out = file.with_extension("hs");
    let result = limited(
        1024,
        &["train", file.to_str().unwrap(), "-o", out.to_str().unwrap()],
    );
    assert_one_error_line(what, &result, says);
    assert!(!out.exists(), "{what}");
}

#[test]
fn parquet_files_declaring_more_than_they_hold_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    // The writer as used here makes a file headstart reads whole.
    let honest = parquet_file(
        8,
        EMBEDDING,
        Compression::SNAPPY,
        true,
        "m.onnx",
        &untouched,
    );
    let set =
        headstart::embeddings::parquet::read_parquet_bytes(honest, Path::new("honest.parquet"))
            .unwrap();
    assert_eq!((set.rows(), set.dim), (8, EMBEDDING));
    assert_eq!(set.class_names, ["a", "b"]);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a string dictionary of 2^31-1 values",
            parquet_file(
                8,
                EMBEDDING,
                Compression::UNCOMPRESSED,
                true,
                "m.onnx",
                &|column, page, size| huge_dictionary(column == 1, page, size),
            ),
            "a dictionary page declares 2147483647 values",
        ),
        (
            "a float dictionary of 2^31-1 values",
            parquet_file(
                8,
                EMBEDDING,
                Compression::SNAPPY,
                true,
                "m.onnx",
                &|column, page, size| huge_dictionary(column == 3, page, size),
            ),
            "a dictionary page declares 2147483647 values",
        ),
        (
            "one row of 400 million run-length encoded floats",
            parquet_file(
                1,
                2,
                Compression::UNCOMPRESSED,
                true,
                "m.onnx",
                &|column, page, size| {
                    match page {
                        Page::DataPage { statistics, .. } if column == 3 => {
                            let count = 400_000_000u64;
                            let mut buf = levels(&[(1, 0), (count - 1, 1)]);
                            buf.extend(levels(&[(count, 2)]));
                            // Dictionary indices one bit wide: all the first value.
                            buf.push(1);
                            rle_run(count, 0, &mut buf);
                            let size = buf.len();
                            (
                                Page::DataPage {
                                    buf: Bytes::from(buf),
                                    num_values: count as u32,
                                    encoding: Encoding::RLE_DICTIONARY,
                                    def_level_encoding: Encoding::RLE,
                                    rep_level_encoding: Encoding::RLE,
                                    statistics,
                                },
                                size,
                            )
                        }
                        other => (other, size),
                    }
                },
            ),
            "declares 400000000 values, more than a file of its size can hold",
        ),
        (
            "a snappy page declaring 2 GiB once decompressed",
            parquet_file(
                8,
                EMBEDDING,
                Compression::SNAPPY,
                false,
                "m.onnx",
                &|column, page, size| match column {
                    0 => (page, i32::MAX as usize),
                    _ => (page, size),
                },
            ),
            "declares 2147483647 once decompressed",
        ),
        (
            "more path values than rows",
            parquet_file(
                8,
                EMBEDDING,
                Compression::UNCOMPRESSED,
                false,
                "m.onnx",
                &|column, page, size| match page {
                    Page::DataPage {
                        buf,
                        encoding,
                        def_level_encoding,
                        rep_level_encoding,
                        statistics,
                        ..
                    } if column == 0 => {
                        let page = Page::DataPage {
                            buf,
                            num_values: 1_000_000,
                            encoding,
                            def_level_encoding,
                            rep_level_encoding,
                            statistics,
                        };
                        (page, size)
                    }
                    other => (other, size),
                },
            ),
            "declares 1000000 values for 8 rows",
        ),
    ];
    for (what, bytes, says) in cases {
        assert!(bytes.len() < 4096, "{what}: {} bytes", bytes.len());
        let file = dir
            .path()
            .join(format!("{}.parquet", what.replace(' ', "-")));
        std::fs::write(&file, &bytes).unwrap();
        seed(
            "parquet_load",
            &file.file_name().unwrap().to_string_lossy(),
            &bytes,
        );
        train_refuses(what, &file, says);
        // The library says the same when given the bytes.
        let error = headstart::embeddings::parquet::read_parquet_bytes(bytes, &file)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(says), "{what}: {error}");
    }

    // The fuzzer's old finding (a timeout) is a seed now: refused at once, in a folder of shards too.
    let finding = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds/parquet_load/refused.timeout-5b42e84f.parquet");
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    std::fs::copy(&finding, shards.join("part-0.parquet")).unwrap();
    let result = limited(
        1024,
        &[
            "train",
            shards.to_str().unwrap(),
            "-o",
            dir.path().join("s.hs").to_str().unwrap(),
        ],
    );
    assert_one_error_line("the old finding", &result, "part-0.parquet");
}

// ---- Texts ---------------------------------------------------------------------------------------------------

/// A table of `rows` short texts, and optionally one more of `long_bytes` bytes of words.
fn text_table(path: &Path, rows: usize, long_bytes: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(file, "text,label").unwrap();
    for i in 0..rows {
        let label = ["pos", "neg"][i % 2];
        writeln!(file, "\"a short review, number {i}\",{label}").unwrap();
    }
    if long_bytes > 0 {
        write!(file, "\"").unwrap();
        let words = "lorem ipsum dolor sit amet consectetur ";
        for _ in 0..long_bytes / words.len() {
            file.write_all(words.as_bytes()).unwrap();
        }
        writeln!(file, "\",pos").unwrap();
    }
}

/// A 20 MB field costs a bounded prefix of tokenizing, not the whole field's: within a few hundred MB of the
/// same table without it.
#[test]
fn a_long_text_field_is_tokenized_only_as_far_as_it_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.csv");
    let long = dir.path().join("long.csv");
    text_table(&short, 40, 0);
    text_table(&long, 40, 20 << 20);
    let out = dir.path().join("e.npz");
    let run = |table: &Path| {
        headstart_peak_memory(&[
            "embed",
            table.to_str().unwrap(),
            "--no-cache",
            "--json",
            "-o",
            out.to_str().unwrap(),
        ])
    };
    let (code, _, stderr, normal) = run(&short);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr, with_long) = run(&long);
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["embedded"], 41, "{stdout}");
    assert_eq!(summary["truncated"], 1, "{stdout}");
    eprintln!("peak memory: {normal} MiB without the 20 MB field, {with_long} MiB with it");
    // The table itself is read whole (20 MB, and the record it becomes).
    assert!(
        with_long < normal + 300,
        "{with_long} MiB with the long field, {normal} MiB without"
    );
}

/// Tokenizing a prefix gives the whole text's tokens: a text with megabytes of whitespace before its words
/// embeds exactly as the same words with single spaces.
#[test]
fn a_prefix_tokenizes_as_the_whole_text_would() {
    let mut backbone = headstart::backbone::TextBackbone::open(
        &headstart::BackboneRef::Zoo("all-minilm-l6-v2".into()),
        &Default::default(),
    )
    .unwrap();
    let words: String = (0..2000).map(|i| format!("word{} ", i % 7)).collect();
    // 100,000 spaces: the prefix grows past them (up to 1 KiB a token).
    let sparse = format!("first{}{}", " ".repeat(100_000), words.repeat(50));
    let dense = format!("first {words}");
    // Past 1 KiB a token, the rest of a text is not read.
    let beyond = format!("first{}{words}", " ".repeat(300_000));
    let tokens = backbone
        .tokenize(&[&sparse, &dense, "short text", &beyond])
        .unwrap();
    assert_eq!(
        tokens[0].encoding.get_ids(),
        tokens[1].encoding.get_ids(),
        "the same first tokens"
    );
    assert_eq!(tokens[0].encoding.len(), backbone.max_length());
    assert!(tokens[0].truncated && tokens[1].truncated && !tokens[2].truncated);
    assert_eq!(tokens[3].encoding.len(), 3, "[CLS] first [SEP]");
    assert!(tokens[3].truncated);
    let rows = backbone.embed(&[&sparse, &dense]).unwrap();
    assert_eq!(rows.row(0), rows.row(1));
}

// ---- Images --------------------------------------------------------------------------------------------------

/// A textured progressive JPEG (libjpeg's standard scans), and the same with `extra` copies of its first AC
/// scan put before the end: a file of thousands of scans, as a hostile encoder may write.
fn progressive_jpeg(extra: usize) -> Vec<u8> {
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    });
    let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
    compress.set_size(640, 480);
    compress.set_progressive_mode();
    let mut started = compress.start_compress(Vec::new()).unwrap();
    started.write_scanlines(image.as_raw()).unwrap();
    let bytes = started.finish().unwrap();
    // Scan headers: FF DA, then its length; the first with a spectral start above 0 is an AC scan.
    let scans: Vec<usize> = bytes
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == &[0xFF, 0xDA])
        .map(|(i, _)| i)
        .collect();
    // The smallest AC scan, to keep the file small.
    let ac = (0..scans.len() - 1)
        .filter(|&i| {
            let components = bytes[scans[i] + 4] as usize;
            bytes[scans[i] + 5 + 2 * components] > 0
        })
        .min_by_key(|&i| scans[i + 1] - scans[i])
        .unwrap();
    let scan = bytes[scans[ac]..scans[ac + 1]].to_vec();
    let end = bytes.len() - 2;
    let mut out = bytes[..end].to_vec();
    for _ in 0..extra {
        out.extend_from_slice(&scan);
    }
    out.extend_from_slice(&bytes[end..]);
    out
}

/// A JPEG of 2,000 scans is skipped with one reason on both decoding paths (reduced scale and exact);
/// a normal progressive JPEG beside it is embedded.
#[test]
fn a_jpeg_of_thousands_of_scans_is_skipped_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("fine.jpg"), progressive_jpeg(0)).unwrap();
    let hostile = progressive_jpeg(2000);
    std::fs::write(images.join("scans.jpg"), hostile).unwrap();
    for extra in [&[][..], &["--exact-decode"][..]] {
        let out = dir.path().join("e.npz");
        let mut args = vec![
            "embed",
            images.to_str().unwrap(),
            "--no-cache",
            "--json",
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let stdout = headstart_ok(&args);
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(summary["embedded"], 1, "{extra:?}: {stdout}");
        assert_eq!(summary["skipped"][0]["path"], "scans.jpg", "{stdout}");
        assert_eq!(
            summary["skipped"][0]["reason"], "cannot decode: more than 100 scans",
            "{extra:?}: {stdout}"
        );
    }
}

// ---- ONNX files ----------------------------------------------------------------------------------------------

/// An image backbone of 4x4 inputs: pooled channels times a 3x2 weight, then a ReLU (`hidden`, a layer to
/// tap). The weight is inline, or external data at `location`.
fn tiny_backbone(weight: [f32; 6], location: Option<&str>) -> Vec<u8> {
    let inline = location.is_none();
    let graph = GraphProto {
        node: tiny_nodes(),
        initializer: match inline {
            true => vec![TensorProto::floats("w", &[3, 2], &weight)],
            false => Vec::new(),
        },
        input: vec![ValueInfoProto::tensor(
            "x",
            FLOAT,
            &[None, Some(3), Some(4), Some(4)],
        )],
        output: vec![ValueInfoProto::tensor("y", FLOAT, &[None, Some(2)])],
        ..Default::default()
    };
    let mut graph_bytes = graph.encode_to_vec();
    if let Some(location) = location {
        // The initializer without its bytes: external_data entries (field 13) and data_location EXTERNAL
        // (field 14), fields headstart's message subset leaves out.
        let mut tensor = TensorProto::floats("w", &[3, 2], &[]);
        tensor.raw_data.clear();
        let mut encoded = tensor.encode_to_vec();
        for (key, value) in [("location", location), ("offset", "0"), ("length", "24")] {
            let entry = StringStringEntryProto {
                key: key.into(),
                value: value.into(),
            };
            prost::encoding::message::encode(13, &entry, &mut encoded);
        }
        prost::encoding::int32::encode(14, &1, &mut encoded);
        prost::encoding::bytes::encode(5, &encoded, &mut graph_bytes);
    }
    let mut model = ModelProto::new(GraphProto::default(), 17);
    model.graph = None;
    let mut bytes = model.encode_to_vec();
    prost::encoding::bytes::encode(7, &graph_bytes, &mut bytes);
    bytes
}

fn tiny_nodes() -> Vec<NodeProto> {
    vec![
        NodeProto::new("GlobalAveragePool", &["x"], &["pooled"]),
        NodeProto::new("Flatten", &["pooled"], &["flat"]),
        NodeProto::new("MatMul", &["flat", "w"], &["hidden"]),
        NodeProto::new("Relu", &["hidden"], &["y"]),
    ]
}

fn weight_bytes(weight: [f32; 6]) -> Vec<u8> {
    weight.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Two small PNGs in `dir`.
fn two_images(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (name, colour) in [("red.png", [200u8, 30, 30]), ("sky.png", [40, 90, 220])] {
        image::RgbImage::from_pixel(16, 16, image::Rgb(colour))
            .save(images.join(name))
            .unwrap();
    }
    images
}

fn embeddings_json(args: &[&str], cwd: &Path) -> Vec<Vec<f64>> {
    let output = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let out = cwd.join("e.npz");
    assert!(out.exists());
    let set = headstart::embeddings::EmbeddedSet::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    set.matrix()
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect()
}

/// External data is read from the model's own folder only: not from the working directory (where a
/// same-named file waits), never through a path that leaves the folder; changing it changes the identity.
#[test]
fn external_data_is_read_only_from_the_models_folder() {
    let dir = tempfile::tempdir().unwrap();
    let images = two_images(dir.path());
    let model_dir = dir.path().join("model");
    std::fs::create_dir(&model_dir).unwrap();
    let real = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5];
    std::fs::write(model_dir.join("weights.bin"), weight_bytes(real)).unwrap();
    let model = model_dir.join("model.onnx");
    std::fs::write(&model, tiny_backbone(real, Some("weights.bin"))).unwrap();
    let inline = dir.path().join("inline.onnx");
    std::fs::write(&inline, tiny_backbone(real, None)).unwrap();
    // The working directory holds a decoy of the same name.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(
        elsewhere.join("weights.bin"),
        weight_bytes([9.0, 9.0, 9.0, 9.0, 9.0, 9.0]),
    )
    .unwrap();

    let embed = |model: &Path, extra: &[&str]| {
        let mut args = vec![
            "embed",
            images.to_str().unwrap(),
            "--backbone",
            model.to_str().unwrap(),
            "--no-cache",
            "-q",
            "-o",
            "e.npz",
        ];
        args.extend_from_slice(extra);
        embeddings_json(&args, &elsewhere)
    };
    let expected = embed(&inline, &["--layer", "hidden"]);
    // As a file ONNX Runtime reads itself, and as bytes (a tapped layer) headstart inlines.
    assert_eq!(embed(&model, &["--layer", "hidden"]), expected);
    assert_eq!(embed(&model, &[]), embed(&inline, &[]));

    // The identity covers the external bytes.
    let inspect = |model: &Path| {
        let stdout = headstart_ok(&["inspect", model.to_str().unwrap()]);
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with("sha256"))
            .unwrap()
            .to_string()
    };
    let before = inspect(&model);
    std::fs::write(
        model_dir.join("weights.bin"),
        weight_bytes([2.0, 0.0, 0.0, 2.0, 0.5, 0.5]),
    )
    .unwrap();
    assert_ne!(inspect(&model), before);

    // Paths that leave the folder are refused, whatever they point at.
    std::fs::write(dir.path().join("secret.bin"), weight_bytes(real)).unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.bin"), model_dir.join("link.bin")).unwrap();
    for (location, says) in [
        ("../secret.bin", "is not a plain relative path"),
        ("/etc/hostname", "is not a plain relative path"),
        ("link.bin", "leads out of the model's folder"),
        ("missing.bin", "is not there"),
    ] {
        let hostile = model_dir.join("hostile.onnx");
        std::fs::write(&hostile, tiny_backbone(real, Some(location))).unwrap();
        for extra in [&[][..], &["--layer", "hidden"][..]] {
            let mut args = vec![
                "embed",
                images.to_str().unwrap(),
                "--backbone",
                hostile.to_str().unwrap(),
                "--no-cache",
                "-o",
            ];
            let out = dir.path().join("h.npz");
            args.push(out.to_str().unwrap());
            args.extend_from_slice(extra);
            let result = headstart(&args);
            assert_one_error_line(location, &result, says);
            assert!(!out.exists());
        }
    }
}

/// A bundle names its backbone: a FIFO, a device or a file that is not an ONNX model is refused at once,
/// without reading it.
#[test]
fn a_bundle_naming_a_fifo_or_a_device_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("backbone.onnx");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let zero_link = dir.path().join("zero.onnx");
    std::os::unix::fs::symlink("/dev/zero", &zero_link).unwrap();
    for (source, says) in [
        (fifo.to_str().unwrap(), "not a regular file"),
        (zero_link.to_str().unwrap(), "not a regular file"),
        ("/dev/zero", "which is not an .onnx file"),
        ("/etc/passwd", "which is not an .onnx file"),
    ] {
        let (_, bundle) = bundle_from_embeddings(dir.path(), "named", source, &[]);
        let result = limited(2048, &["predict", bundle.to_str().unwrap(), "some text"]);
        assert_one_error_line(source, &result, says);
    }
}

// ---- The cache root ------------------------------------------------------------------------------------------

/// `cache clear --all` removes the folders headstart made and nothing of the user's, even folders named as
/// headstart's own.
#[test]
fn clearing_the_cache_leaves_the_users_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    for (file, bytes) in [
        ("embeddings/notes.txt", &b"mine"[..]),
        ("models/my-model.onnx", b"mine"),
        ("datasets/table.csv", b"mine"),
        ("runtime/x", b"mine"),
        ("mine.txt", b"mine"),
    ] {
        let path = home.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let cleared = headstart_json_in_home(&home, &["cache", "clear", "--all", "--json"]);
    assert_eq!(cleared["removed"], serde_json::json!([]));
    assert_eq!(
        cleared["left_alone"],
        serde_json::json!(["datasets", "embeddings", "mine.txt", "models", "runtime"])
    );
    for file in [
        "embeddings/notes.txt",
        "models/my-model.onnx",
        "datasets/table.csv",
        "runtime/x",
        "mine.txt",
    ] {
        assert_eq!(std::fs::read(home.join(file)).unwrap(), b"mine", "{file}");
    }
}

// ---- Silent wrong results ------------------------------------------------------------------------------------

/// Settings that would make every image the same, or bundles whose numbers cannot predict, are refused.
#[test]
fn settings_and_bundles_that_cannot_give_a_right_answer_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let images = two_images(dir.path());
    let model = dir.path().join("tiny.onnx");
    std::fs::write(&model, tiny_backbone([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], None)).unwrap();
    let embed = |extra: &[&str]| {
        let mut args = vec![
            "embed",
            images.to_str().unwrap(),
            "--backbone",
            model.to_str().unwrap(),
            "--no-cache",
            "-o",
            dir.path()
                .join("e.npz")
                .to_str()
                .unwrap()
                .to_string()
                .leak(),
        ];
        args.extend_from_slice(extra);
        headstart(&args)
    };
    assert_one_error_line(
        "--crop-pct 0",
        &embed(&["--crop-pct", "0"]),
        "--crop-pct must be in (0, 1], got 0",
    );
    assert_one_error_line(
        "--std 0",
        &embed(&["--std", "0"]),
        "--std must not contain zero",
    );

    // A bundle trained from embeddings, then damaged one way at a time.
    let (table, trained) = bundle_from_embeddings(dir.path(), "good", "m.onnx", &[]);
    let (_, knn) = bundle_from_embeddings(dir.path(), "knn", "m.onnx", &["--head", "knn"]);
    use headstart::head::Head;
    type Damage = Box<dyn Fn(&mut headstart::Bundle)>;
    let damages: Vec<(&str, Damage, &str)> = vec![
        (
            "NaN weights",
            Box::new(|b| {
                if let Head::Logistic(model) = &mut b.head {
                    model.weights[[0, 0]] = f32::NAN;
                }
            }),
            "'weights' holds NaN",
        ),
        (
            "a zero scale",
            Box::new(|b| {
                if let Head::Logistic(model) = &mut b.head {
                    model.scaler.scale[0] = 0.0;
                }
            }),
            "'scaler_scale' holds",
        ),
        (
            "no classes",
            Box::new(|b| b.info.class_names.clear()),
            "names no classes",
        ),
        (
            "a class twice",
            Box::new(|b| b.info.class_names = vec!["a".into(), "a".into()]),
            "class 'a' is named twice",
        ),
    ];
    for (what, damage, says) in damages {
        let mut bundle = headstart::Bundle::load(&trained).unwrap();
        damage(&mut bundle);
        let damaged = dir.path().join("damaged.hs");
        bundle.save(&damaged).unwrap();
        seed(
            "bundle_load",
            &format!("{}.hs", what.replace(' ', "-")),
            &std::fs::read(&damaged).unwrap(),
        );
        let result = headstart(&["eval", damaged.to_str().unwrap(), table.to_str().unwrap()]);
        assert_one_error_line(what, &result, says);
    }
    // A negative kNN label, written as the bundle stores it: the same file with one label made -1.
    let bytes = std::fs::read(&knn).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut rewritten = std::io::Cursor::new(Vec::new());
    let mut writer = zip::ZipWriter::new(&mut rewritten);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if name == "knn_labels.npy" {
            let last = data.len() - 8;
            data[last..].copy_from_slice(&(-1i64).to_le_bytes());
        }
        writer
            .start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(&data).unwrap();
    }
    writer.finish().unwrap();
    let damaged = dir.path().join("negative.hs");
    std::fs::write(&damaged, rewritten.into_inner()).unwrap();
    seed(
        "bundle_load",
        "a-negative-kNN-label.hs",
        &std::fs::read(&damaged).unwrap(),
    );
    let result = headstart(&["eval", damaged.to_str().unwrap(), table.to_str().unwrap()]);
    assert_one_error_line(
        "a negative kNN label",
        &result,
        "'knn_labels' holds a negative number",
    );

    // The flag the user typed is the one the error names.
    let result = headstart(&[
        "train",
        table.to_str().unwrap(),
        "-o",
        dir.path().join("o.hs").to_str().unwrap(),
        "--open-set",
        "1.5",
    ]);
    assert_one_error_line("--open-set 1.5", &result, "--open-set must be");
}

/// A row with an unquoted comma in its text is skipped with its line, not read with its columns shifted.
#[test]
fn a_row_with_more_fields_than_the_header_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("reviews.csv");
    std::fs::write(
        &table,
        "text,label\ngreat product,pos\ngreat product, loved it,pos\nbroke at once,neg\n",
    )
    .unwrap();
    let set = headstart::data::texts::load_table(&table, &Default::default()).unwrap();
    assert_eq!(set.items.len(), 2);
    assert_eq!(set.classes, ["neg", "pos"]);
    assert_eq!(set.skipped.len(), 1);
    assert_eq!(set.skipped[0].path, "reviews.csv:3");
    assert!(
        set.skipped[0]
            .reason
            .contains("3 fields where the header has 2"),
        "{:?}",
        set.skipped
    );
}

/// Two class folders whose names differ only in bytes that are not UTF-8 would merge once named: refused.
#[test]
fn class_folders_that_read_alike_are_refused() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    for name in [&b"cat\xff"[..], b"cat\xfe"] {
        let class = root.join(std::ffi::OsStr::from_bytes(name));
        std::fs::create_dir_all(&class).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
            .save(class.join("a.png"))
            .unwrap();
    }
    let error = headstart::data::files::scan(&root).unwrap_err().to_string();
    assert!(
        error.contains("two class folders are both 'cat\u{FFFD}'"),
        "{error}"
    );
}

/// The pixel limit holds for images the cache already knows; a path longer than the system takes is a skip
/// that says so.
#[test]
fn the_pixel_limit_holds_for_cached_images_and_long_paths_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let images = two_images(dir.path());
    let model = dir.path().join("tiny.onnx");
    std::fs::write(&model, tiny_backbone([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], None)).unwrap();
    let home = dir.path().join("home");
    let out = dir.path().join("e.npz");
    let embed_folder = |folder: &Path, extra: &[&str]| {
        let args = [
            "embed",
            folder.to_str().unwrap(),
            "--backbone",
            model.to_str().unwrap(),
            "--json",
            "-o",
            out.to_str().unwrap(),
        ];
        headstart_json_in_home(&home, &[&args[..], extra].concat())
    };
    let embed = |extra: &[&str]| embed_folder(&images, extra);
    image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]))
        .save(images.join("small.png"))
        .unwrap();
    assert_eq!(embed(&[])["from_cache"], 0);
    let limited = embed(&["--max-pixels", "100"]);
    assert_eq!(limited["from_cache"], 1, "{limited}");
    assert_eq!(limited["embedded"], 1, "{limited}");
    assert!(
        limited["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("16x16 is 256 pixels, over the limit of 100"),
        "{limited}"
    );

    let deep = dir.path().join("deep");
    let deep_class = deep.join("class");
    std::fs::create_dir_all(&deep_class).unwrap();
    std::fs::copy(images.join("sky.png"), deep_class.join("sky.png")).unwrap();
    // 17 folders of 250 characters: the file's path is over 4,096 bytes. Made one `chdir` at a time, as no
    // single call can name it.
    let made = Command::new("python3")
        .args([
            "-c",
            "import os, shutil, sys\n\
             os.chdir(sys.argv[1])\n\
             for _ in range(17):\n    os.mkdir('d' * 250)\n    os.chdir('d' * 250)\n\
             shutil.copy(sys.argv[2], 'deep.png')",
        ])
        .arg(&deep_class)
        .arg(images.join("red.png"))
        .status()
        .unwrap();
    assert!(made.success());
    let summary = embed_folder(&deep, &[]);
    let skipped = summary["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{summary}");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot read: File name too long"),
        "{summary}"
    );
}

/// A model ONNX Runtime refuses gets headstart's one `error:` line, without ONNX Runtime's own log lines
/// before it.
#[test]
fn a_model_onnx_runtime_refuses_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let images = two_images(dir.path());
    let mut nodes = tiny_nodes();
    nodes[3].op_type = "NoSuchOperator".into();
    let model = dir.path().join("broken.onnx");
    let bytes = ModelProto::new(
        GraphProto {
            node: nodes,
            initializer: vec![TensorProto::floats("w", &[3, 2], &[1.0; 6])],
            input: vec![ValueInfoProto::tensor(
                "x",
                FLOAT,
                &[None, Some(3), Some(4), Some(4)],
            )],
            output: vec![ValueInfoProto::tensor("y", FLOAT, &[None, Some(2)])],
            ..Default::default()
        },
        17,
    )
    .encode_to_vec();
    std::fs::write(&model, bytes).unwrap();
    let result = headstart(&[
        "embed",
        images.to_str().unwrap(),
        "--backbone",
        model.to_str().unwrap(),
        "--no-cache",
        "-o",
        dir.path().join("e.npz").to_str().unwrap(),
    ]);
    assert_one_error_line("an unknown operator", &result, "NoSuchOperator");
}

/// At most `--max-pixels` pixels are decoded at once across workers: two 16-bit PNGs that each fill most of
/// the budget, on two workers, peak about as one does (a 16-bit image takes a dozen bytes a pixel to decode).
#[test]
fn large_images_are_decoded_within_one_budget_across_workers() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.onnx");
    std::fs::write(&model, tiny_backbone([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], None)).unwrap();
    let large = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(3000, 3000, |x, y| {
        image::Rgb([(x * 20) as u16, (y * 20) as u16, ((x + y) * 10) as u16])
    });
    let one = dir.path().join("one");
    let two = dir.path().join("two");
    for (folder, count) in [(&one, 1), (&two, 2)] {
        std::fs::create_dir(folder).unwrap();
        for i in 0..count {
            large.save(folder.join(format!("large{i}.png"))).unwrap();
        }
    }
    let peak = |folder: &Path| {
        let out = folder.with_extension("npz");
        let (code, _, stderr, peak) = headstart_peak_memory(&[
            "embed",
            folder.to_str().unwrap(),
            "--backbone",
            model.to_str().unwrap(),
            "--no-cache",
            "--workers",
            "2",
            "--max-pixels",
            "10000000",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        peak
    };
    let (alone, together) = (peak(&one), peak(&two));
    eprintln!(
        "peak memory: {alone} MiB for one 9-megapixel 16-bit PNG, {together} MiB for two on two workers"
    );
    // Decoding both at once would add about the first one's decoding again (over 100 MiB).
    assert!(together < alone + 50, "{together} MiB against {alone} MiB");
}
