//! The real default backbones on real inputs, and the layout / colour / tap machinery on a real second
//! backbone and on generated models.

use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
use headstart::data::decode::open_image;
mod common;

use common::onnx_proto::{FLOAT, GraphProto, ModelProto, NodeProto, ValueInfoProto};
use headstart::backbone::Pooling;
use headstart::backbone::{ColourOrder, Interpolation, PreprocessOverrides, Resize};
use headstart::datasets::sample_photos;
use headstart::embeddings::cosine;
use headstart::zoo;
use headstart::zoo::top_classes;
use prost::Message;

fn photo(name: &str) -> image::DynamicImage {
    let path = sample_photos()
        .unwrap()
        .into_iter()
        .find(|p| p.ends_with(name))
        .unwrap();
    open_image(&path).unwrap()
}

fn efficientnet(output: Option<&str>, layer: Option<&str>) -> ImageBackbone {
    let options = {
        let mut options = BackboneOptions::default();
        options.output = output.map(String::from);
        options.layer = layer.map(String::from);
        options
    };
    ImageBackbone::open(&BackboneRef::Zoo("efficientnet-lite0".into()), &options).unwrap()
}

/// The pretrained classifier's verdicts prove the preprocessing matches how the model was trained.
#[test]
fn default_image_backbone_sees_a_cat_and_an_espresso() {
    let model = zoo::find("efficientnet-lite0").unwrap();
    let (logits_output, labels) = zoo::labels(&model).unwrap().unwrap();
    assert_eq!(labels.len(), 1000);
    let mut classifier = efficientnet(Some(&logits_output), None);
    let logits = classifier
        .embed(&[photo("chelsea.png"), photo("coffee.png")])
        .unwrap();
    assert_eq!(logits.dim(), (2, 1000));

    let cat = top_classes(logits.row(0).as_slice().unwrap(), &labels, 1);
    // ImageNet's domestic cats: tabby 281, tiger cat 282, Persian 283, Siamese 284, Egyptian cat 285.
    let cat_classes = &labels[281..=285];
    assert!(
        cat_classes.contains(&cat[0].0),
        "chelsea.png top class {:?} is not a cat",
        cat[0]
    );

    let coffee = top_classes(logits.row(1).as_slice().unwrap(), &labels, 1);
    assert_eq!(coffee[0].0, labels[967], "coffee.png top class {coffee:?}");
    assert!(
        coffee[0].1 > 0.8,
        "espresso should be confident: {coffee:?}"
    );
}

#[test]
fn default_image_features_are_1280_pooled_values() {
    let mut backbone = efficientnet(None, None);
    assert_eq!(backbone.identity().name, "efficientnet-lite0");
    assert_eq!(
        backbone.identity().sha256,
        zoo::find("efficientnet-lite0").unwrap().onnx.sha256()
    );
    let features = backbone
        .embed(&[photo("chelsea.png"), photo("rocket.jpg")])
        .unwrap();
    assert_eq!(features.dim(), (2, 1280));
    assert!(
        features.iter().all(|v| v.is_finite() && *v >= 0.0),
        "ReLU6 features are non-negative"
    );
    let similarity = cosine(
        features.row(0).as_slice().unwrap(),
        features.row(1).as_slice().unwrap(),
    );
    assert!(
        similarity < 0.9,
        "a cat and a rocket should not look alike: {similarity}"
    );
}

/// Tapping the 4-D `head` activation and average-pooling it must give exactly the graph's own pooled output.
#[test]
fn tapped_layer_pools_like_the_graph() {
    let images = [photo("coffee.png")];
    let graph_pooled = efficientnet(None, None).embed(&images).unwrap();
    let tapped = efficientnet(None, Some("head")).embed(&images).unwrap();
    assert_eq!(tapped.dim(), (1, 1280));
    let max_diff = graph_pooled
        .iter()
        .zip(tapped.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(max_diff < 1e-4, "max difference {max_diff}");

    let early = efficientnet(None, Some("block3")).embed(&images).unwrap();
    assert_eq!(early.dim(), (1, 40), "block3 has 40 channels");
}

#[test]
fn text_backbone_similarity_matches_sentence_transformers() {
    let mut text = TextBackbone::open(
        &BackboneRef::Zoo("all-minilm-l6-v2".into()),
        &Default::default(),
    )
    .unwrap();
    let e = text
        .embed(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new tax law takes effect in March.",
        ])
        .unwrap();
    assert_eq!(e.dim(), (3, 384));
    let row = |i: usize| e.row(i).to_vec();
    for i in 0..3 {
        let norm: f32 = row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "embeddings are L2-normalised: {norm}"
        );
    }
    let related = cosine(&row(0), &row(1));
    let unrelated = cosine(&row(0), &row(2));
    assert!(
        (related - 0.755).abs() <= 0.03,
        "cos(food, bread) = {related}"
    );
    assert!(unrelated < 0.25, "cos(food, tax law) = {unrelated}");
    // Padding must not change a text's embedding: alone vs. batched with longer texts.
    let alone = text.embed(&["A man is eating food."]).unwrap();
    assert!(cosine(alone.row(0).as_slice().unwrap(), &row(0)) > 0.9999);
}

/// open-nsfw is a TensorFlow-layout model (NHWC, BGR, mean subtraction) whose pooled layer is not a graph
/// output: the zoo taps it.
#[test]
fn nhwc_bgr_backbone_with_tapped_pool_layer() {
    let reference = BackboneRef::Zoo("open-nsfw".into());
    let mut backbone = ImageBackbone::open(&reference, &Default::default()).unwrap();
    let p = backbone.preprocess().clone();
    assert_eq!(
        (p.layout, p.colour, p.mean),
        (
            headstart::backbone::Layout::Nhwc,
            ColourOrder::Bgr,
            [104.0, 117.0, 123.0]
        )
    );
    let images = [photo("chelsea.png"), photo("coffee.png")];
    let bgr = backbone.embed(&images).unwrap();
    assert_eq!(bgr.dim(), (2, 1024));
    assert!(bgr.iter().all(|v| v.is_finite()));

    let rgb_options = BackboneOptions::default()
        .preprocess(PreprocessOverrides::default().colour(ColourOrder::Rgb));
    let rgb = ImageBackbone::open(&reference, &rgb_options)
        .unwrap()
        .embed(&images)
        .unwrap();
    let same = cosine(
        bgr.row(0).as_slice().unwrap(),
        rgb.row(0).as_slice().unwrap(),
    );
    assert!(
        same < 0.9999,
        "the colour order must reach the model (cos {same})"
    );
}

/// A generated NHWC model that returns its input: the pooled values are exactly the preprocessed pixels,
/// in BGR order, minus the per-channel mean.
#[test]
fn nhwc_bgr_mean_subtraction_is_exact_on_a_generated_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity_nhwc.onnx");
    let graph = GraphProto {
        name: "identity".into(),
        node: vec![NodeProto::new("Identity", &["image"], &["pixels"])],
        input: vec![ValueInfoProto::tensor(
            "image",
            FLOAT,
            &[None, Some(4), Some(4), Some(3)],
        )],
        output: vec![ValueInfoProto::tensor(
            "pixels",
            FLOAT,
            &[None, Some(4), Some(4), Some(3)],
        )],
        ..Default::default()
    };
    std::fs::write(&path, ModelProto::new(graph, 13).encode_to_vec()).unwrap();
    let options = BackboneOptions::default()
        .pooling(Pooling::Mean)
        .preprocess(
            PreprocessOverrides::default()
                .mean([104.0, 117.0, 123.0])
                .std([1.0, 1.0, 1.0])
                .colour(ColourOrder::Bgr)
                .resize(Resize::Stretch)
                .interpolation(Interpolation::Nearest),
        );
    let mut backbone = ImageBackbone::open(&BackboneRef::File(path), &options).unwrap();
    assert_eq!(
        backbone.preprocess().layout,
        headstart::backbone::Layout::Nhwc,
        "layout comes from the input shape"
    );
    assert_eq!(
        (backbone.preprocess().height, backbone.preprocess().width),
        (4, 4),
        "size comes from the input shape"
    );
    let red_green_blue =
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(9, 7, image::Rgb([10, 20, 30])));
    let pooled = backbone.embed(&[red_green_blue]).unwrap();
    assert_eq!(
        pooled.row(0).to_vec(),
        [30.0 - 104.0, 20.0 - 117.0, 10.0 - 123.0]
    );
}

/// A model with dynamic height and width takes the configured size; one with a fixed batch of 1 is fed one
/// image at a time.
#[test]
fn dynamic_size_and_fixed_batch_models() {
    let dir = tempfile::tempdir().unwrap();
    let solid = |rgb: [u8; 3]| {
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(50, 40, image::Rgb(rgb)))
    };
    let unit = BackboneOptions::default()
        .preprocess(PreprocessOverrides::default().mean([0.0; 3]).std([1.0; 3]));
    let pool_model = |name: &str, dims: &[Option<i64>]| {
        let path = dir.path().join(name);
        let graph = GraphProto {
            name: "pool".into(),
            node: vec![NodeProto::new("GlobalAveragePool", &["image"], &["pooled"])],
            input: vec![ValueInfoProto::tensor("image", FLOAT, dims)],
            output: vec![ValueInfoProto::tensor(
                "pooled",
                FLOAT,
                &[dims[0], Some(3), Some(1), Some(1)],
            )],
            ..Default::default()
        };
        std::fs::write(&path, ModelProto::new(graph, 13).encode_to_vec()).unwrap();
        BackboneRef::File(path)
    };

    let dynamic = pool_model("dynamic.onnx", &[None, Some(3), None, None]);
    let backbone = ImageBackbone::open(&dynamic, &unit).unwrap();
    assert_eq!(
        (backbone.preprocess().height, backbone.preprocess().width),
        (224, 224),
        "default size"
    );
    let small = BackboneOptions::default().preprocess(unit.preprocess.clone().size((8, 16)));
    let mut backbone = ImageBackbone::open(&dynamic, &small).unwrap();
    assert_eq!(
        (backbone.preprocess().height, backbone.preprocess().width),
        (8, 16)
    );
    let out = backbone.embed(&[solid([1, 2, 3])]).unwrap();
    assert_eq!(out.row(0).to_vec(), [1.0, 2.0, 3.0]);

    let batch_of_one = pool_model("batch1.onnx", &[Some(1), Some(3), Some(4), Some(4)]);
    let mut backbone = ImageBackbone::open(&batch_of_one, &unit).unwrap();
    let out = backbone
        .embed(&[solid([1, 1, 1]), solid([2, 2, 2]), solid([3, 3, 3])])
        .unwrap();
    assert_eq!(out.column(0).to_vec(), [1.0, 2.0, 3.0]);

    let conflicting =
        BackboneOptions::default().preprocess(PreprocessOverrides::default().size((8, 8)));
    let err = ImageBackbone::open(&batch_of_one, &conflicting)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("does not fit the model's fixed input shape"),
        "{err}"
    );
}
