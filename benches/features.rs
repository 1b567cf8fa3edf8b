//! Features chosen by the data (`train --features auto`) on both demos, with the demos' own held-out splits:
//! every candidate's cross-validated accuracy on the training rows (the spread is the standard deviation over
//! the 5 folds), its accuracy on the held-out test rows (never used to choose), and its embedding time on this
//! machine (a fresh cache, so every candidate is embedded). The search then runs again on the same cache: the
//! second run only trains heads.
//!
//! cargo bench --bench features
//!   HEADSTART_BENCH_BACKBONES=a,b   other image backbones to try on ELPV (dinov2-s,open-nsfw; "" for none)

use headstart::backbone::{BackboneOptions, BackboneRef};
use headstart::data::Data;
use headstart::datasets;
use headstart::embeddings::EmbedOptions;
use headstart::head::TrainParams;
use headstart::workflow::{
    FeatureSearch, SearchEvent, SearchSettings, Validation, search_features,
};

fn main() {
    let others =
        std::env::var("HEADSTART_BENCH_BACKBONES").unwrap_or_else(|_| "dinov2-s,open-nsfw".into());
    let others: Vec<BackboneRef> = others
        .split(',')
        .filter(|name| !name.is_empty())
        .map(BackboneRef::parse)
        .collect();
    let elpv = datasets::elpv_by_defect().expect("fetches ELPV");
    report(
        "ELPV solar cells (defective / functional), 1,800 training and 824 test images",
        &run(
            &Data::open(&elpv, &Default::default()).expect("lists ELPV"),
            datasets::ELPV_TEST_FRACTION,
            datasets::ELPV_SEED,
            SearchSettings::default().backbones(others),
        ),
    );
    let vader = datasets::vader_movies().expect("fetches VADER");
    report(
        "VADER movie-review snippets (negative / positive), 8,484 training and 2,121 test texts",
        &run(
            &Data::open(&vader, &Default::default()).expect("reads VADER"),
            datasets::VADER_TEST_FRACTION,
            datasets::VADER_SEED,
            SearchSettings::default(),
        ),
    );
}

/// The search on a fresh cache, then again on the same cache (its time is printed).
fn run(data: &Data, test_fraction: f64, seed: u64, settings: SearchSettings) -> FeatureSearch {
    let cache = tempfile::tempdir().expect("a temporary folder");
    let embed = EmbedOptions::default().cache_dir(cache.path());
    let first = search(data, test_fraction, seed, &settings, &embed);
    let again = search(data, test_fraction, seed, &settings, &embed);
    let cached: usize = again.scored.iter().map(|s| s.from_cache).sum();
    println!(
        "\nthe same search again, on the cache: {:.1} s ({} vectors from the cache; {:.1} s the first time)",
        again.seconds, cached, first.seconds
    );
    first
}

fn search(
    data: &Data,
    test_fraction: f64,
    seed: u64,
    settings: &SearchSettings,
    embed: &EmbedOptions,
) -> FeatureSearch {
    search_features(
        data,
        &Validation::Split {
            fraction: test_fraction,
            seed,
        },
        None,
        &BackboneOptions::default(),
        embed,
        &TrainParams::default(),
        settings,
        &mut |event| {
            if let SearchEvent::Starting {
                index,
                planned,
                candidate,
            } = event
            {
                eprintln!("candidate {}/{planned}: {candidate}", index + 1);
            }
        },
        &mut |_, _| {},
    )
    .expect("the search runs")
}

fn report(title: &str, search: &FeatureSearch) {
    println!("\n{title}");
    println!("| candidate | dim | CV accuracy ± fold sd | test accuracy | embed s |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (i, scored) in search.scored.iter().enumerate() {
        let mark = if i == search.chosen {
            " **(chosen)**"
        } else {
            ""
        };
        println!(
            "| {}{mark} | {} | {:.4} ± {:.4} | {:.4} | {:.1} |",
            scored.candidate,
            scored.dim,
            scored.cv_accuracy,
            scored.fold_spread(),
            scored.validation_accuracy.unwrap_or(f64::NAN),
            scored.embed_seconds
        );
    }
    let default = &search.scored[0];
    let chosen = &search.scored[search.chosen];
    let test = |s: &headstart::workflow::Scored| s.validation_accuracy.unwrap_or(f64::NAN);
    println!(
        "auto − default: CV {:+.4}, test {:+.4} (fold sd of the default {:.4}); search {:.0} s",
        chosen.cv_accuracy - default.cv_accuracy,
        test(chosen) - test(default),
        default.fold_spread(),
        search.seconds
    );
}
