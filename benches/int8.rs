//! int8 against fp32 on the default backbone (EfficientNet-Lite0), side by side in one run on this machine:
//! (a) `headstart embed` throughput on the whole ELPV folder, no cache, rounds alternating;
//! (b) the ELPV demo (its held-out split): test accuracy of a head trained on each precision's features, and
//!     top-1 agreement with fp32 on the test images, both for the int8 bundle and for the fp32 bundle's head
//!     on int8 features (what `export --int8` of a float bundle runs);
//! (c) exported file sizes (whole and `--raw-input`) and latency per image of the whole file in ONNX Runtime,
//!     batch 1, on one thread and on all.
//!
//! cargo bench --bench int8
//!   HEADSTART_BENCH_ROUNDS=N        throughput rounds (3)
//!   HEADSTART_BENCH_CALIBRATION=N   calibration images (300, the default)
//!   HEADSTART_BENCH_METHOD=M        calibration method: minmax, percentile or mse (the default's)

use std::path::Path;
use std::time::Instant;

use headstart::backbone::{Backbone, BackboneOptions, BackboneRef, CalibrationMethod};
use headstart::bundle::Bundle;
use headstart::classifier::Classifier;
use headstart::data::Data;
use headstart::embeddings::{EmbedOptions, EmbeddedSet, embed};
use headstart::export::{ExportOptions, export_classifier};
use headstart::head::{ClassScores, TrainParams};
use headstart::runtime::Precision;
use headstart::workflow::{self, Validation};
use headstart::{datasets, zoo};
use ndarray::Array2;
use ort::value::TensorRef;

const LATENCY_RUNS: usize = 60;

fn main() {
    let rounds = std::env::var("HEADSTART_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let folder = datasets::elpv_by_defect().expect("fetches ELPV");
    let data = Data::open(&folder, &Default::default()).expect("lists ELPV");
    let reference = BackboneRef::Zoo(zoo::default_for(headstart::Modality::Image).name);
    let float = BackboneOptions::default();
    let mut int8 = BackboneOptions::default();
    int8.runtime.precision = Precision::Int8;
    if let Some(count) = std::env::var("HEADSTART_BENCH_CALIBRATION")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        int8.calibrate = int8.calibrate.inputs(count);
    }
    match std::env::var("HEADSTART_BENCH_METHOD").as_deref() {
        Ok("minmax") => int8.calibrate = int8.calibrate.method(CalibrationMethod::MinMax),
        Ok("percentile") => int8.calibrate = int8.calibrate.method(CalibrationMethod::Percentile),
        Ok("mse") => int8.calibrate = int8.calibrate.method(CalibrationMethod::Mse),
        _ => {}
    }

    // (b) first: the int8 run calibrates on the training images only, and its ranges serve everything below.
    let split = Validation::Split {
        fraction: datasets::ELPV_TEST_FRACTION,
        seed: datasets::ELPV_SEED,
    };
    let train = |options: &BackboneOptions| {
        workflow::train(
            &data,
            &split,
            None,
            options,
            &EmbedOptions::default(),
            &TrainParams::default(),
            &mut |_, _| {},
        )
        .expect("trains")
        .trained
        .bundle
    };
    let float_bundle = train(&float);
    let int8_bundle = train(&int8);
    int8.calibration = int8_bundle.info.features.backbone.calibration.clone();
    let calibration = int8.calibration.as_ref().expect("an int8 bundle");
    println!(
        "int8 calibration: {} training images, {:?}, {} activation ranges",
        calibration.inputs,
        calibration.method,
        calibration.ranges.len()
    );

    // (a)
    let mut float_backbone = Backbone::open(&reference, data.modality().unwrap(), &float)
        .expect("opens the float backbone");
    let mut int8_backbone = Backbone::open(&reference, data.modality().unwrap(), &int8)
        .expect("opens the int8 backbone");
    let no_cache = EmbedOptions::default().use_cache(false);
    let mut ratios = Vec::new();
    println!("\nembed {} ELPV images, no cache", data_len(&data));
    println!("| round | fp32 images/s | int8 images/s | int8 / fp32 |");
    println!("| ---: | ---: | ---: | ---: |");
    for round in 1..=rounds {
        let float_rate = images_per_second(&data, &mut float_backbone, &no_cache);
        let int8_rate = images_per_second(&data, &mut int8_backbone, &no_cache);
        ratios.push(int8_rate / float_rate);
        println!(
            "| {round} | {float_rate:.1} | {int8_rate:.1} | {:.2} |",
            int8_rate / float_rate
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("median int8 / fp32: {:.2}", ratios[ratios.len() / 2]);

    // (b)
    let embedded = |options: &BackboneOptions| -> EmbeddedSet {
        workflow::embeddings_for(
            &data,
            None,
            options,
            &EmbedOptions::default(),
            &mut |_, _| {},
        )
        .expect("embeds")
        .0
    };
    let (float_set, int8_set) = (embedded(&float), embedded(&int8));
    let (_, test) = workflow::stratified_split(
        &float_set,
        datasets::ELPV_TEST_FRACTION,
        datasets::ELPV_SEED,
    )
    .expect("splits");
    let (float_test, int8_test) = (float_set.select(&test), int8_set.select(&test));
    assert_eq!(float_test.paths, int8_test.paths, "the same test images");
    let labels = float_test.labels.clone().expect("labelled");
    let top = |bundle: &Bundle, set: &EmbeddedSet| {
        argmax(&bundle.head.probabilities(set.matrix(), bundle.temperature))
    };
    let float_answers = top(&float_bundle, &float_test);
    let int8_answers = top(&int8_bundle, &int8_test);
    let mixed_answers = top(&float_bundle, &int8_test);
    let accuracy = |answers: &[usize]| share(answers, &labels);
    println!("\nELPV demo, {} test images", labels.len());
    println!("| features | head trained on | test accuracy | top-1 agreement with fp32 |");
    println!("| --- | --- | ---: | ---: |");
    println!("| fp32 | fp32 | {:.4} | 1 |", accuracy(&float_answers));
    println!(
        "| int8 | int8 | {:.4} | {:.4} |",
        accuracy(&int8_answers),
        share(&int8_answers, &float_answers)
    );
    println!(
        "| int8 | fp32 (export --int8 of a float bundle) | {:.4} | {:.4} |",
        accuracy(&mixed_answers),
        share(&mixed_answers, &float_answers)
    );

    // (c)
    let scratch = tempfile::tempdir().expect("temp dir");
    let save = |bundle: &Bundle, name: &str| {
        let path = scratch.path().join(name);
        bundle.save(&path).expect("saves the bundle");
        Classifier::load(&path, &Default::default(), None).expect("loads the bundle")
    };
    let float_classifier = save(&float_bundle, "float.hs");
    let int8_classifier = save(&int8_bundle, "int8.hs");
    let export = |classifier: &Classifier, name: &str, raw_input: bool| {
        let path = scratch.path().join(name);
        let options = ExportOptions::default().raw_input(raw_input);
        export_classifier(classifier, &options, &path).expect("exports");
        path
    };
    let float_file = export(&float_classifier, "float.onnx", false);
    let int8_file = export(&int8_classifier, "int8.onnx", false);
    let float_raw = export(&float_classifier, "float-raw.onnx", true);
    let int8_raw = export(&int8_classifier, "int8-raw.onnx", true);
    let size = |p: &Path| std::fs::metadata(p).expect("exported").len() as f64 / 1e6;
    let image = first_image_tensor(&folder, &float_classifier);
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("\nexported files; latency per image, batch 1, median of {LATENCY_RUNS}");
    println!("| precision | whole MB | raw-input MB | ms, 1 thread | ms, {cores} threads |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, whole, raw) in [
        ("fp32", &float_file, &float_raw),
        ("int8", &int8_file, &int8_raw),
    ] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.2} |",
            size(whole),
            size(raw),
            latency_ms(whole, &image, 1),
            latency_ms(whole, &image, cores)
        );
    }
    println!(
        "int8 / fp32 size: whole {:.3}, raw-input {:.3}",
        size(&int8_file) / size(&float_file),
        size(&int8_raw) / size(&float_raw)
    );
}

fn data_len(data: &Data) -> usize {
    match data {
        Data::Images(files) => files.items.len(),
        _ => 0,
    }
}

fn images_per_second(data: &Data, backbone: &mut Backbone, options: &EmbedOptions) -> f64 {
    let started = Instant::now();
    let (set, _) = embed(data, backbone, options, &mut |_, _| {}).expect("embeds");
    set.rows() as f64 / started.elapsed().as_secs_f64()
}

fn argmax(probabilities: &Array2<f32>) -> Vec<usize> {
    probabilities
        .rows()
        .into_iter()
        .map(|row| {
            (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0)
        })
        .collect()
}

fn share(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len().max(1) as f64
}

/// One ELPV cell preprocessed as the bundle's backbone takes it.
fn first_image_tensor(folder: &Path, classifier: &Classifier) -> Vec<f32> {
    let Backbone::Image(backbone) = classifier.backbone() else {
        panic!("an image bundle");
    };
    let mut cells: Vec<_> = std::fs::read_dir(folder.join("functional"))
        .expect("ELPV folder")
        .map(|e| e.expect("entry").path())
        .collect();
    cells.sort();
    let image = headstart::data::decode::open_image(&cells[0]).expect("decodes");
    let preprocess = backbone.preprocess();
    let mut tensor = vec![0.0f32; preprocess.tensor_len()];
    preprocess.apply(&image, &mut tensor);
    tensor
}

fn latency_ms(model: &Path, image: &[f32], threads: usize) -> f64 {
    let environment = headstart::runtime::environment(&Default::default()).expect("ONNX Runtime");
    let builder = ort::session::Session::builder(&environment).expect("session builder");
    let mut builder = builder
        .with_intra_threads(threads)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut session = builder.commit_from_file(model).expect("session");
    let mut times = Vec::with_capacity(LATENCY_RUNS);
    for run in 0..LATENCY_RUNS + 5 {
        let tensor = TensorRef::from_array_view(([1usize, 3, 224, 224], image)).expect("tensor");
        let started = Instant::now();
        session.run(ort::inputs!["image" => tensor]).expect("runs");
        // The first runs warm up.
        if run >= 5 {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}
