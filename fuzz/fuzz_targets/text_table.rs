//! Any bytes as a CSV, TSV or JSONL text table (the first byte picks which): rows, counted skips or a
//! clear error, never a crash.
#![no_main]

use std::path::Path;

use headstart::data::texts::{TableFormat, TextOptions, parse_table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&pick, table)) = bytes.split_first() else {
        return;
    };
    let format = match pick % 3 {
        0 => TableFormat::Csv,
        1 => TableFormat::Tsv,
        _ => TableFormat::JsonLines,
    };
    let Ok(set) = parse_table(table, format, &TextOptions::default(), Path::new("fuzz.table")) else {
        return;
    };
    assert!(set.items.iter().all(|item| item.label.is_some_and(|l| l < set.classes.len())));
    assert!(set.items.iter().all(|item| !item.text.trim().is_empty()));
});
