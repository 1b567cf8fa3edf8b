//! Classify images with a trained bundle, from Rust:
//!
//! cargo run --example classify -- model.hs photo1.jpg photo2.png
//!
//! (Make model.hs with `headstart train FOLDER -o model.hs`; with `--open-set`, an image unlike the training
//! data is answered `unknown`.)

use std::path::PathBuf;

use headstart::classifier::{Classifier, PredictOptions};
use headstart::data::Data;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bundle = args.next().ok_or("usage: classify MODEL.hs IMAGE...")?;
    let files: Vec<PathBuf> = args.map(PathBuf::from).collect();
    let mut classifier = Classifier::load(bundle.as_ref(), &Default::default(), None)?;

    // One image's class probabilities...
    if let Some(first) = files.first() {
        let probabilities = classifier.predict_path(first)?;
        println!("{}: {probabilities:?}", first.display());
    }
    // ...and answers for a batch, decoded as the bundle's training images were: the top two classes, and
    // `unknown` below 60 % or for a novel input.
    let options = PredictOptions::default().top_k(2).min_confidence(0.6);
    let predicted = classifier.predict(&Data::image_files(&files), &options, &mut |_, _| {})?;
    for (file, answer) in &predicted.rows {
        println!(
            "{file}: {} {:?}",
            answer.label.as_deref().unwrap_or("unknown"),
            answer.top
        );
    }
    if let Some(summary) = &predicted.summary {
        for skip in &summary.skipped {
            println!("{}: skipped, {}", skip.path, skip.reason);
        }
    }
    Ok(())
}
