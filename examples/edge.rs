//! The smallest device-side program: classify an image with a file from `headstart export --raw-input`,
//! using nothing but ONNX Runtime (the `ort` crate) and an image decoder. No headstart, no linfa: the file
//! carries the preprocessing, the head and the class names.
//!
//!   headstart export model.hs -o model.onnx --raw-input
//!   ORT_DYLIB_PATH=/path/to/libonnxruntime.so cargo run --release --example edge -- model.onnx photo.jpg...
//!
//! Prints `image<TAB>class<TAB>probability` lines, most probable class first. The file takes uint8 RGB pixels
//! at the size it was exported for (`--raw-size`, default the model's input size); an image of another size is
//! scaled to it first. `examples/edge-device` builds this file as a program of its own, for ARM boards.

use ort::session::Session;
use ort::value::{TensorRef, ValueType};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, photos @ ..] = args.as_slice() else {
        return Err("usage: edge MODEL.onnx IMAGE...".into());
    };
    if photos.is_empty() {
        return Err("usage: edge MODEL.onnx IMAGE...".into());
    }
    let library =
        std::env::var_os("ORT_DYLIB_PATH").ok_or("set ORT_DYLIB_PATH to libonnxruntime.so")?;
    let environment = ort::init_from(&library)?.build()?;
    let mut session = Session::builder(&environment)?.commit_from_file(model)?;
    let (height, width) = match session.inputs().first().map(|i| i.dtype()) {
        Some(ValueType::Tensor { shape, .. }) if shape.len() == 4 => {
            (shape[1] as u32, shape[2] as u32)
        }
        _ => return Err("not a --raw-input file: expected pixels [N, H, W, 3]".into()),
    };
    let classes: Vec<String> = session
        .metadata()?
        .custom("headstart.class_names")
        .map(|json| serde_json::from_str(&json))
        .transpose()?
        .ok_or("the file has no headstart.class_names")?;

    for photo in photos {
        let mut image = image::open(photo)?.to_rgb8();
        if image.dimensions() != (width, height) {
            image = image::imageops::resize(
                &image,
                width,
                height,
                image::imageops::FilterType::Triangle,
            );
        }
        let started = std::time::Instant::now();
        let pixels = TensorRef::from_array_view((
            [1usize, height as usize, width as usize, 3],
            image.as_raw().as_slice(),
        ))?;
        let outputs = session.run(ort::inputs!["pixels" => pixels])?;
        let (_, probabilities) = outputs["probabilities"].try_extract_tensor::<f32>()?;
        let elapsed = started.elapsed();

        let mut ranked: Vec<(&String, f32)> =
            classes.iter().zip(probabilities.iter().copied()).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (class, p) in ranked {
            println!("{photo}\t{class}\t{p:.7}");
        }
        eprintln!("{photo}: inference {:.1} ms", elapsed.as_secs_f64() * 1e3);
    }
    Ok(())
}
