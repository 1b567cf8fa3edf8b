//! The committed default backbone is reproduced bit for bit from its registry package by its script.

use headstart::zoo;

#[test]
fn efficientnet_conversion_reproduces_the_committed_file() {
    let model = zoo::find("efficientnet-lite0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("efficientnet-lite0.onnx");
    zoo::convert(&model, &out).unwrap();
    let committed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/efficientnet-lite0.onnx");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(committed).unwrap()
    );
}
