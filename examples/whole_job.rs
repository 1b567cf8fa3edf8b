//! The whole job through the library, the same code for images and texts: open the data (a folder of class
//! folders, or a text table), embed it with the default backbone for what it holds, hold out a stratified
//! fifth, train a head, save the bundle, load it back with its backbone, and classify the held-out part.
//!
//! cargo run --release --example whole_job -- FOLDER_OR_TABLE...
//!
//! For example `"$(headstart datasets fetch elpv)" examples/data/questions.csv`: one image data set and one
//! text data set, one after the other.

use headstart::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inputs: Vec<String> = std::env::args().skip(1).collect();
    if inputs.is_empty() {
        return Err("usage: whole_job FOLDER_OR_TABLE...".into());
    }
    for input in &inputs {
        whole_job(input.as_ref())?;
    }
    Ok(())
}

fn whole_job(input: &std::path::Path) -> Result<()> {
    // What the path holds (images, texts, or embeddings made earlier) is decided here, once.
    let data = Data::open(input, &TextOptions::default())?;
    let (set, summary) = workflow::embeddings_for(
        &data,
        None,
        &BackboneOptions::default(),
        &EmbedOptions::default(),
        &mut |_, _| {},
    )?;
    let what = data.modality().map_or("rows", Modality::unit);
    if let Some(summary) = &summary {
        println!(
            "{}: {} {what} embedded ({} from the cache), {} skipped",
            input.display(),
            summary.embedded,
            summary.from_cache,
            summary.skipped.len()
        );
    }

    let (train_rows, held_out_rows) = workflow::stratified_split(&set, 0.2, 42)?;
    let trained = workflow::train_bundle(
        &set.select(&train_rows),
        Some(&set.select(&held_out_rows)),
        &TrainParams::default(),
    )?;
    for warning in &trained.report.warnings {
        println!("  warning: {warning}");
    }
    if let Some(metrics) = &trained.validation {
        println!(
            "  held-out accuracy {:.3}, macro-F1 {:.3} on {} {what}",
            metrics.accuracy, metrics.macro_f1, metrics.samples
        );
    }
    let bundle = std::env::temp_dir().join("whole_job.hs");
    trained.bundle.save(&bundle)?;

    // A service at start-up: the bundle and the backbone it names, then answers for any data of its kind.
    let mut classifier = Classifier::load(&bundle, &RuntimeOptions::default(), None)?;
    let answers = classifier.predict(&data, &PredictOptions::default().top_k(1), &mut |_, _| {})?;
    for (shown, prediction) in answers.rows.iter().take(3) {
        let shown: String = shown.chars().take(60).collect();
        println!(
            "  {shown:<60}  {} ({:.0}%)",
            prediction.label.as_deref().unwrap_or("unknown"),
            prediction.top.first().map_or(0.0, |(_, p)| p * 100.0)
        );
    }
    Ok(())
}
