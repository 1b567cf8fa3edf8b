//! Any bytes through decoding (format sniffing, the checks for truncated and corrupt data, EXIF orientation,
//! reduced-scale JPEG decoding, RGB conversion) and every preprocessing mode: an image or a reason, never a
//! crash.
#![no_main]

use headstart::data::decode::{DecodeOptions, decode_image};
use headstart::backbone::{ImagePreprocess, Interpolation, Layout, Resize};
use libfuzzer_sys::fuzz_target;

// Small enough that a hostile header is refused before memory runs out under the fuzzer's RSS limit.
const MAX_PIXELS: u64 = 4_000_000;

fuzz_target!(|bytes: &[u8]| {
    let variants = [
        ImagePreprocess::default(),
        ImagePreprocess {
            height: 17,
            width: 31,
            resize: Resize::Stretch,
            interpolation: Interpolation::Bicubic,
            layout: Layout::Nhwc,
            ..Default::default()
        },
        ImagePreprocess {
            height: 8,
            width: 8,
            crop_pct: 1.0,
            interpolation: Interpolation::Nearest,
            ..Default::default()
        },
    ];
    for allow_truncated in [false, true] {
        let options = DecodeOptions::default()
            .max_pixels(MAX_PIXELS)
            .allow_truncated(allow_truncated);
        // Every pixel, then as each preprocessing needs it (reduced-scale JPEG decoding where it may).
        let decodes = std::iter::once(None).chain(variants.iter().map(Some));
        for target in decodes {
            let Ok(image) = decode_image(bytes, &options, target) else {
                continue;
            };
            for preprocess in &variants {
                let mut tensor = vec![0.0f32; preprocess.tensor_len()];
                preprocess.apply(&image, &mut tensor);
                assert!(tensor.iter().all(|v| v.is_finite()));
            }
        }
    }
});
