//! Text data from real registry packages.

use headstart::textdata::{Columns, load};

/// VADER's movie snippets are fetched from the vaderSentiment source archive (sha256-checked) and read as a
/// text table: all 10,605 rows, positive when the mean score is above 0.
#[test]
fn vader_movie_snippets_load_as_a_labelled_table() {
    let table = headstart::datasets::vader_movies().unwrap();
    let set = load(&table, &Columns::default()).unwrap();
    assert!(
        set.skipped.is_empty(),
        "{:?}",
        &set.skipped[..set.skipped.len().min(3)]
    );
    assert_eq!(set.items.len(), 10_605);
    assert_eq!(set.classes, vec!["negative", "positive"]);
    let positive = set.items.iter().filter(|i| i.label == 1).count();
    assert_eq!(positive, 5_242);
    assert!(
        set.items[0]
            .text
            .starts_with("The Rock is destined to be the 21st Century's new")
    );
}
