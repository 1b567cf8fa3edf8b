//! headstart's heads as linfa estimators: embeddings from `headstart embed` become a `linfa::Dataset`, each head
//! is fitted with linfa's `Fit` (its parameters checked by `ParamGuard`) and asked with linfa's `Predict`, and
//! linfa's confusion matrix scores it. The logistic head also runs with linfa-logistic as its solver.
//!
//! cargo run --release --example linfa_heads -- EMBEDDINGS.npz
//!
//! For example after `headstart embed "$(headstart datasets fetch elpv)" -o elpv.npz`.

use headstart::embeddings::EmbeddedSet;
use headstart::head::{
    CentroidParams, ClassScores, KnnParams, LinearSvmParams, LogisticParams, NaiveBayesParams,
    Solver,
};
use linfa::prelude::*;
use ndarray::{Array1, Axis};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: linfa_heads EMBEDDINGS.npz (from `headstart embed` on labelled data)")?;
    let set = EmbeddedSet::read(path.as_ref())?;
    let labels = set.labels.clone().ok_or("the embeddings are unlabelled")?;

    // Every fourth row is held out; the rest trains. Plain linfa datasets, owned.
    let (train_rows, test_rows): (Vec<usize>, Vec<usize>) =
        (0..labels.len()).partition(|i| i % 4 != 0);
    let split = |rows: &[usize]| {
        Dataset::new(
            set.matrix().select(Axis(0), rows),
            rows.iter().map(|&i| labels[i]).collect::<Array1<usize>>(),
        )
    };
    let (train, test) = (split(&train_rows), split(&test_rows));
    println!(
        "{} training and {} test embeddings of {} values, classes {:?}",
        train.nsamples(),
        test.nsamples(),
        train.nfeatures(),
        set.class_names
    );

    // Unchecked parameters fit directly (linfa checks them first); `check()` gives the checked ones.
    let logistic = LogisticParams::new().c(0.1).check()?.fit(&train)?;
    report("logistic", &logistic.predict(&test), &test)?;
    let reference = LogisticParams::new()
        .c(0.1)
        .solver(Solver::Linfa)
        .fit(&train)?;
    report(
        "logistic (linfa-logistic)",
        &reference.predict(&test),
        &test,
    )?;
    let svm = LinearSvmParams::new().c(0.01).fit(&train)?;
    report("linear-svm", &svm.predict(&test), &test)?;
    let bayes = NaiveBayesParams::new().fit(&train)?;
    report("gaussian-nb", &bayes.predict(&test), &test)?;
    let centroid = CentroidParams::new().fit(&train)?;
    report("centroid", &centroid.predict(&test), &test)?;
    let knn = KnnParams::new().k(5).fit(&train)?;
    report("knn", &knn.predict(&test), &test)?;

    // Beyond the predicted class, every model gives class probabilities (softmax at a temperature).
    let probabilities = logistic.probabilities(test.records().view(), 1.0);
    println!(
        "logistic probabilities of the first test row: {}",
        probabilities.row(0)
    );
    Ok(())
}

fn report(
    head: &str,
    predicted: &Array1<usize>,
    test: &Dataset<f32, usize, ndarray::Ix1>,
) -> Result<(), linfa::Error> {
    let matrix = predicted.confusion_matrix(test)?;
    println!("{head:>26}: accuracy {:.4}", matrix.accuracy());
    Ok(())
}
