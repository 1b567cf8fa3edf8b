//! A customer-question router from a few labelled questions, with the library alone: embed a table with the
//! default text backbone, train a logistic head, save the bundle, and route new questions.
//!
//! cargo run --example route_questions -- examples/data/questions.csv "Where is my parcel?" "I was charged twice"
//!
//! The table needs a `text` and a `label` column (CSV, TSV or JSON lines).

use headstart::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let table = args
        .next()
        .ok_or("usage: route_questions TABLE.csv QUESTION...")?;
    let questions: Vec<String> = args.collect();

    // Embeddings go through the cache, so a second run embeds nothing.
    let data = Data::open(table.as_ref(), &TextOptions::default())?;
    let (set, _) = workflow::embeddings_for(
        &data,
        None,
        &BackboneOptions::default(),
        &EmbedOptions::default(),
        &mut |_, _| {},
    )?;
    let trained = workflow::train_bundle(&set, None, &TrainParams::default())?;
    for warning in &trained.report.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "{} questions, {} classes; cross-validated accuracy {:.3} at C = {}",
        trained.report.samples,
        set.class_names.len(),
        trained.report.cv_accuracy,
        trained.report.chosen_c.unwrap_or_default()
    );
    let bundle = std::env::temp_dir().join("route_questions.hs");
    trained.bundle.save(&bundle)?;

    // What a service would do at start-up: load the bundle (and its backbone) once, then answer.
    let mut router = Classifier::load(&bundle, &Default::default(), None)?;
    let options = PredictOptions::default().top_k(1).min_confidence(0.5);
    let predicted = router.predict(&Data::texts(questions.clone()), &options, &mut |_, _| {})?;
    for (question, answer) in &predicted.rows {
        println!(
            "{:<10} {:>4.0}%  {question}",
            answer.label.as_deref().unwrap_or("unknown"),
            answer.top[0].1 * 100.0
        );
    }
    Ok(())
}
