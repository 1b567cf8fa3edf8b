//! Text data from real registry packages.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{
    headstart_ok_with_stdin as headstart_ok, headstart_with_stdin as headstart, python_reference,
};
use headstart::backbone::{BackboneRef, TextBackbone};
use headstart::data::TextOptions;
use headstart::data::texts::{self, load_table};
use headstart::embeddings::EmbedOptions;
use headstart::embeddings::cosine;
use headstart::embeddings::embed_texts;
use headstart::zoo;

/// VADER's movie snippets are fetched from the vaderSentiment source archive (sha256-checked) and read as a
/// text table: all 10,605 rows, positive when the mean score is above 0.
#[test]
fn vader_movie_snippets_load_as_a_labelled_table() {
    let table = headstart::datasets::vader_movies().unwrap();
    let set = load_table(&table, &TextOptions::default()).unwrap();
    assert!(
        set.skipped.is_empty(),
        "{:?}",
        &set.skipped[..set.skipped.len().min(3)]
    );
    assert_eq!(set.items.len(), 10_605);
    assert_eq!(set.classes, vec!["negative", "positive"]);
    let positive = set.items.iter().filter(|i| i.label == Some(1)).count();
    assert_eq!(positive, 5_242);
    assert!(
        set.items[0]
            .text
            .starts_with("The Rock is destined to be the 21st Century's new")
    );
}

fn minilm() -> TextBackbone {
    TextBackbone::open(
        &BackboneRef::Zoo("all-minilm-l6-v2".into()),
        &Default::default(),
    )
    .unwrap()
}

/// headstart's sentence embeddings (batched, padded, bucketed) against Hugging Face tokenizers + Python
/// onnxruntime + numpy pooling, one text at a time, including a text longer than the maximum length.
/// The float32 MiniLM, converted from its safetensors by models/convert_minilm.py, gives the int8 default's
/// vectors and the known similarity of a sentence pair (0.755 for the float32 model).
#[test]
fn the_float32_minilm_matches_the_int8_default() {
    let sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply on Monday.",
        "where is my order? the tracking page says delivered but nothing came",
    ];
    let mut float32 = TextBackbone::open(
        &BackboneRef::Zoo("all-minilm-l6-v2-fp32".into()),
        &Default::default(),
    )
    .unwrap();
    let full = float32.embed(&sentences).unwrap();
    let int8 = minilm().embed(&sentences).unwrap();
    for (a, b) in full.rows().into_iter().zip(int8.rows()) {
        let agreement = cosine(a.as_slice().unwrap(), b.as_slice().unwrap());
        assert!(
            agreement > 0.999,
            "float32 against int8: cosine {agreement}"
        );
    }
    let pair = cosine(
        full.row(0).as_slice().unwrap(),
        full.row(1).as_slice().unwrap(),
    );
    assert!(
        (pair - 0.755).abs() < 0.002,
        "cos(eating food, bread) {pair}"
    );
}

#[test]
fn sentence_embeddings_match_an_independent_python_reference() {
    let long =
        "The film opens slowly, lingers on every face, and then, without warning, turns into \
                something else entirely. "
            .repeat(12);
    let texts = [
        "A man is eating food.",
        "The new movie is wonderful.",
        "I did not like it at all, and the ending was a mess!",
        "Ünïcödé, accents and an emoji 🎬 still embed.",
        "ok",
        long.as_str(),
    ];
    let mut backbone = minilm();
    let ours = backbone.embed(&texts).unwrap();

    let zoo_model = zoo::find("all-minilm-l6-v2").unwrap();
    let onnx = zoo::fetch_all(&zoo_model).unwrap();
    let tokenizer =
        zoo::registry_path(&zoo_model.name, &zoo_model.text.as_ref().unwrap().tokenizer).unwrap();
    let mut child = python_reference("reference_text.py")
        .arg(&onnx)
        .arg(&tokenizer)
        .arg(backbone.max_length().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&texts).unwrap().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(reference.len(), texts.len());
    assert_eq!(
        reference[5]["tokens"],
        backbone.max_length(),
        "the long text is longer than the maximum length"
    );
    for (i, expected) in reference.iter().enumerate() {
        let expected: Vec<f32> = serde_json::from_value(expected["embedding"].clone()).unwrap();
        let similarity = cosine(ours.row(i).as_slice().unwrap(), &expected);
        assert!(similarity >= 0.999, "text {i}: cosine {similarity}");
    }

    // The dataset path (length buckets, cache off) gives the same vectors and counts the truncated text.
    let data = texts::unlabelled("test", texts.iter().map(|t| t.to_string()).collect());
    let options = EmbedOptions::default().use_cache(false).batch_size(4);
    let (set, summary) = embed_texts(&data, &mut backbone, &options, &mut |_, _| {}).unwrap();
    assert_eq!(summary.truncated, Some(1));
    assert_eq!((set.rows(), set.dim), (texts.len(), 384));
    assert_eq!(set.labels, None);
    for i in 0..texts.len() {
        let row = &set.embeddings[i * 384..(i + 1) * 384];
        assert!(cosine(row, ours.row(i).as_slice().unwrap()) > 0.9999);
    }
}

fn csv_field(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// 300 positive and 300 negative movie snippets as a CSV with a byte-order mark, plus three rows that must
/// be skipped: an empty text, an empty label and invalid UTF-8.
fn sentiment_csv(dir: &Path) -> PathBuf {
    let movies = load_table(
        &headstart::datasets::vader_movies().unwrap(),
        &TextOptions::default(),
    )
    .unwrap();
    let mut bytes = b"\xEF\xBB\xBFid,text,label\r\n".to_vec();
    for label in 0..2 {
        for item in movies
            .items
            .iter()
            .filter(|i| i.label == Some(label))
            .take(300)
        {
            let row = format!(
                "{},{},{}\r\n",
                item.id.len(),
                csv_field(&item.text),
                movies.classes[label]
            );
            bytes.extend_from_slice(row.as_bytes());
        }
    }
    bytes.extend_from_slice(
        b"1,\"\",positive\r\n2,\"fine film\",\r\n3,\"caf\xE9 society\",negative\r\n",
    );
    let path = dir.join("reviews.csv");
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn train_eval_and_predict_texts_from_a_table_arguments_a_file_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let csv = sentiment_csv(dir.path());
    let bundle = dir.path().join("sentiment.hs");
    let bundle_arg = bundle.to_str().unwrap();
    let stdout = headstart_ok(
        &[
            "train",
            csv.to_str().unwrap(),
            "-o",
            bundle_arg,
            "--val-split",
            "0.25",
            "--json",
        ],
        None,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["train"]["samples"], 450);
    assert_eq!(report["validation"]["samples"], 150);
    assert_eq!(report["embed"]["skipped"].as_array().unwrap().len(), 3);
    assert!(report["validation"]["accuracy"].as_f64().unwrap() > 0.6);
    let saved = headstart::bundle::Bundle::load(&bundle).unwrap();
    assert!(matches!(
        saved.info.features.input,
        headstart::backbone::InputSpec::Text(_)
    ));
    assert_eq!(saved.info.class_names, ["negative", "positive"]);

    // eval reads the same table; the text column can be renamed.
    let original = std::fs::read(&csv).unwrap();
    let header = b"\xEF\xBB\xBFid,text,label";
    let renamed = [b"\xEF\xBB\xBFid,review,label", &original[header.len()..]].concat();
    let renamed_csv = dir.path().join("renamed.csv");
    std::fs::write(&renamed_csv, renamed).unwrap();
    let page = dir.path().join("report.html");
    let stdout = headstart_ok(
        &[
            "eval",
            bundle_arg,
            renamed_csv.to_str().unwrap(),
            "--text-column",
            "review",
            "--json",
            "--report",
            page.to_str().unwrap(),
        ],
        None,
    );
    let metrics: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(metrics["samples"], 600);
    // The report quotes the misclassified texts (at most 60) instead of showing image thumbnails.
    let confusion = metrics["confusion"].as_array().unwrap();
    let mistakes = confusion[0][1].as_u64().unwrap() + confusion[1][0].as_u64().unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(&format!("Misclassified ({mistakes})")));
    assert_eq!(
        html.matches("<blockquote>").count() as u64,
        mistakes.min(60)
    );
    assert!(mistakes > 0 && !html.contains("<img"));

    // A label column that is not there is a clear error.
    let (code, _, stderr) = headstart(
        &[
            "train",
            csv.to_str().unwrap(),
            "-o",
            bundle_arg,
            "--label-column",
            "sentiment",
        ],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no column 'sentiment'") && stderr.contains("--label-column"),
        "{stderr}"
    );
    assert!(
        headstart::bundle::Bundle::load(&bundle).is_ok(),
        "the old bundle is intact"
    );

    // The same texts as arguments, from a file and on stdin give the same answers.
    let texts = [
        "A wonderful, moving film with a superb cast.",
        "Dull, lifeless and far too long; a waste of time.",
    ];
    let by_args = headstart_ok(
        &[
            "predict", bundle_arg, texts[0], texts[1], "--format", "json",
        ],
        None,
    );
    let answers: serde_json::Value = serde_json::from_str(&by_args).unwrap();
    let labels: Vec<&str> = answers["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["positive", "negative"], "{by_args}");
    assert_eq!(answers["predictions"][0]["text"], texts[0]);

    let lines = format!("{}\r\n\n{}\n", texts[0], texts[1]);
    let by_stdin = headstart_ok(
        &["predict", bundle_arg, "--format", "json"],
        Some(lines.as_bytes()),
    );
    assert_eq!(by_stdin, by_args);

    let file = dir.path().join("texts.txt");
    let mut with_bad_line = lines.into_bytes();
    with_bad_line.extend_from_slice(b"caf\xE9\n");
    std::fs::write(&file, with_bad_line).unwrap();
    let (code, by_file, stderr) = headstart(
        &[
            "predict",
            bundle_arg,
            "--from",
            file.to_str().unwrap(),
            "--format",
            "csv",
        ],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(by_file.lines().count(), 3, "{by_file}");
    assert!(by_file.starts_with("text,label,"), "{by_file}");
    assert!(stderr.contains("not valid UTF-8"), "{stderr}");

    // Nothing to classify is an error, not an empty answer.
    let (code, _, stderr) = headstart(&["predict", bundle_arg], Some(b"\n\n"));
    assert_eq!(code, 1);
    assert!(stderr.contains("no text to classify"), "{stderr}");
}

/// A folder with one sub-folder of .txt files per class is a text dataset too.
#[test]
fn a_folder_of_text_files_trains_a_text_bundle() {
    let movies = load_table(
        &headstart::datasets::vader_movies().unwrap(),
        &TextOptions::default(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reviews");
    for (label, class) in movies.classes.iter().enumerate() {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for (i, item) in movies
            .items
            .iter()
            .filter(|i| i.label == Some(label))
            .take(40)
            .enumerate()
        {
            std::fs::write(data.join(class).join(format!("{i}.txt")), &item.text).unwrap();
        }
    }
    let out = dir.path().join("reviews.npz");
    let stdout = headstart_ok(
        &[
            "embed",
            data.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (summary["rows"].as_u64(), summary["dim"].as_u64()),
        (Some(80), Some(384))
    );
    let set = headstart::embeddings::EmbeddedSet::read_npz(&out).unwrap();
    assert!(matches!(
        set.features.input,
        headstart::backbone::InputSpec::Text(_)
    ));
    // --no-cache computes every text again and gets the same vectors.
    let uncached_out = dir.path().join("uncached.npz");
    let stdout = headstart_ok(
        &[
            "embed",
            data.to_str().unwrap(),
            "-o",
            uncached_out.to_str().unwrap(),
            "--no-cache",
            "--json",
        ],
        None,
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (summary["from_cache"].as_u64(), summary["computed"].as_u64()),
        (Some(0), Some(80))
    );
    let uncached = headstart::embeddings::EmbeddedSet::read_npz(&uncached_out).unwrap();
    let largest_difference = set
        .embeddings
        .iter()
        .zip(&uncached.embeddings)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(largest_difference < 1e-5, "{largest_difference}");
    let bundle = dir.path().join("reviews.hs");
    headstart_ok(
        &[
            "train",
            out.to_str().unwrap(),
            "-o",
            bundle.to_str().unwrap(),
            "-q",
        ],
        None,
    );
    assert!(matches!(
        headstart::bundle::Bundle::load(&bundle)
            .unwrap()
            .info
            .features
            .input,
        headstart::backbone::InputSpec::Text(_)
    ));
}

/// The text demo: VADER movie snippets, the stated split, the default backbone and logistic head must reach
/// the 0.754 test accuracy a Python probe measured on MiniLM embeddings.
#[test]
fn vader_sentiment_demo_reaches_the_python_probe_accuracy() {
    let job = headstart::workflow::train_and_test(
        &headstart::datasets::vader_movies().unwrap(),
        headstart::datasets::VADER_TEST_FRACTION,
        headstart::datasets::VADER_SEED,
        &Default::default(),
        &mut |_, _| {},
        std::time::Instant::now(),
    )
    .unwrap();
    assert!(job.embed.skipped.is_empty());
    assert_eq!(job.train_rows + job.test_rows, 10_605);
    assert!(
        job.test.accuracy >= 0.754,
        "test accuracy {:.4} (chosen C {:?})",
        job.test.accuracy,
        job.report.chosen_c
    );
}

/// Multi-label on texts: the router's questions as a JSON Lines table whose labels are lists, each question's
/// team and `question` for those that end with a question mark. Every label is learnt from the embeddings, and
/// predict answers with label sets.
#[test]
fn multi_label_texts_from_json_lists() {
    let dir = tempfile::tempdir().unwrap();
    let router = load_table(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/data/questions.csv"
        )),
        &TextOptions::default(),
    )
    .unwrap();
    let mut lines = String::new();
    for item in &router.items {
        let mut labels = vec![router.classes[item.label.unwrap()].clone()];
        if item.text.trim_end().ends_with('?') {
            labels.push("question".into());
        }
        lines.push_str(&format!(
            "{}\n",
            serde_json::json!({"text": item.text, "label": labels})
        ));
    }
    let table = dir.path().join("tickets.jsonl");
    std::fs::write(&table, lines).unwrap();
    let bundle = dir.path().join("tickets.hs");
    let stdout = headstart_ok(
        &[
            "train",
            table.to_str().unwrap(),
            "--multi-label",
            "-o",
            bundle.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let cross_validated = &report["train"]["cross_validated"];
    let names: Vec<&str> = cross_validated["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["account", "billing", "delivery", "question"]);
    assert!(
        cross_validated["micro"]["f1"].as_f64().unwrap() > 0.8,
        "{cross_validated}"
    );
    let stdout = headstart_ok(
        &[
            "predict",
            bundle.to_str().unwrap(),
            "--format",
            "json",
            "Where is my parcel? It's been ten days",
        ],
        None,
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let labels = &answer["predictions"][0]["labels"];
    assert!(
        labels
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("delivery")),
        "{answer}"
    );
}
