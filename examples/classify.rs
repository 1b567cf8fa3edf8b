//! Classify images with a trained bundle, from Rust:
//!
//! cargo run --example classify -- model.hs photo1.jpg photo2.png
//!
//! (Make model.hs with `headstart train FOLDER -o model.hs`.)

use headstart::classifier::{Classifier, predictions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bundle = args.next().ok_or("usage: classify MODEL.hs IMAGE...")?;
    let files: Vec<String> = args.collect();
    let mut classifier = Classifier::load(bundle.as_ref(), &Default::default(), None)?;

    // One image from a path...
    if let Some(first) = files.first() {
        let probabilities = classifier.predict_path(first.as_ref())?;
        println!("{first}: {probabilities:?}");
    }
    // ...and a batch of images, decoded as the bundle's training images were, answered as top-2 with `unknown`
    // below 60%.
    let images = files
        .iter()
        .map(|f| classifier.open_image(f.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    let probabilities = classifier.predict_images(&images)?;
    for (file, answer) in files.iter().zip(predictions(
        probabilities.view(),
        classifier.class_names(),
        2,
        0.6,
    )) {
        println!(
            "{file}: {} {:?}",
            answer.label.as_deref().unwrap_or("unknown"),
            answer.top
        );
    }
    Ok(())
}
