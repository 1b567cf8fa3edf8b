//! Image preprocessing: everything between a decoded image and the backbone's input tensor. It must match
//! how the backbone was trained (size, resize and crop, interpolation, normalisation, layout, colour order),
//! so it is explicit, serialisable and shown to the user.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;
use serde::{Deserialize, Serialize};

mod config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// [N, channels, height, width] (PyTorch).
    Nchw,
    /// [N, height, width, channels] (TensorFlow).
    Nhwc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ColourOrder {
    Rgb,
    /// Caffe and OpenCV models.
    Bgr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Shorter side to size / crop_pct (keeping the aspect ratio), then a centre crop (timm, torchvision).
    Crop,
    /// Straight to the input size, ignoring the aspect ratio.
    Stretch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos,
}

impl Interpolation {
    /// Pillow's filters (fast_image_resize follows Pillow's convolution resampling).
    fn algorithm(self) -> ResizeAlg {
        match self {
            Interpolation::Nearest => ResizeAlg::Nearest,
            Interpolation::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
            Interpolation::Bicubic => ResizeAlg::Convolution(FilterType::CatmullRom),
            Interpolation::Lanczos => ResizeAlg::Convolution(FilterType::Lanczos3),
        }
    }
}

/// How JPEGs are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JpegDecode {
    /// At 1/2, 1/4 or 1/8 scale in the DCT domain when the part the output shows is at least twice the output
    /// size: pixels that the resize would throw away are never computed.
    #[default]
    Scaled,
    /// Every pixel, then resized.
    Exact,
}

impl JpegDecode {
    /// Files written before scaled decoding existed decoded every pixel.
    fn before_scaling() -> Self {
        JpegDecode::Exact
    }

    fn is_exact(&self) -> bool {
        *self == JpegDecode::Exact
    }
}

/// How an image becomes a backbone input. `mean` and `std` are in pixel units (0–255) and listed in the
/// model's channel order: input = (pixel − mean) / std.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePreprocess {
    pub height: u32,
    pub width: u32,
    pub resize: Resize,
    /// Fraction of the resized image the centre crop keeps (only with `resize: crop`).
    pub crop_pct: f32,
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub layout: Layout,
    pub colour: ColourOrder,
    /// Left out when exact, so configurations from before scaled decoding keep their cache keys.
    #[serde(
        default = "JpegDecode::before_scaling",
        skip_serializing_if = "JpegDecode::is_exact"
    )]
    pub jpeg_decode: JpegDecode,
}

impl Default for ImagePreprocess {
    /// timm's defaults for ImageNet models.
    fn default() -> Self {
        ImagePreprocess {
            height: 224,
            width: 224,
            resize: Resize::Crop,
            crop_pct: 0.875,
            interpolation: Interpolation::Bilinear,
            mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
            std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
            layout: Layout::Nchw,
            colour: ColourOrder::Rgb,
            jpeg_decode: JpegDecode::Scaled,
        }
    }
}

/// Partial preprocessing: from flags or a JSON file beside a model, applied over a base.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct PreprocessOverrides {
    pub size: Option<(u32, u32)>,
    pub resize: Option<Resize>,
    pub crop_pct: Option<f32>,
    pub interpolation: Option<Interpolation>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    pub layout: Option<Layout>,
    pub colour: Option<ColourOrder>,
    pub jpeg_decode: Option<JpegDecode>,
}

setters!(PreprocessOverrides {
    size: (u32, u32),
    resize: Resize,
    crop_pct: f32,
    interpolation: Interpolation,
    mean: [f32; 3],
    std: [f32; 3],
    layout: Layout,
    colour: ColourOrder,
    jpeg_decode: JpegDecode,
});

impl PreprocessOverrides {
    pub(crate) fn apply_to(&self, base: &mut ImagePreprocess) {
        if let Some((h, w)) = self.size {
            base.height = h;
            base.width = w;
        }
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { base.$field = v; })* };
        }
        set!(
            resize,
            crop_pct,
            interpolation,
            mean,
            std,
            layout,
            colour,
            jpeg_decode
        );
    }

    /// Later overrides win.
    pub(crate) fn merge(&mut self, later: &PreprocessOverrides) {
        macro_rules! take {
            ($($field:ident),*) => { $(if later.$field.is_some() { self.$field = later.$field; })* };
        }
        take!(
            size,
            resize,
            crop_pct,
            interpolation,
            mean,
            std,
            layout,
            colour,
            jpeg_decode
        );
    }
}

impl ImagePreprocess {
    /// Number of f32 values one image becomes.
    pub fn tensor_len(&self) -> usize {
        3 * self.height as usize * self.width as usize
    }

    /// The input tensor shape for a batch of `n`.
    pub fn batch_shape(&self, n: usize) -> [i64; 4] {
        let (h, w) = (self.height as i64, self.width as i64);
        match self.layout {
            Layout::Nchw => [n as i64, 3, h, w],
            Layout::Nhwc => [n as i64, h, w, 3],
        }
    }

    /// Resizes, crops and normalises `image` into `out` (length [`Self::tensor_len`]) in the model's layout
    /// and colour order.
    pub fn apply(&self, image: &DynamicImage, out: &mut [f32]) {
        let converted;
        let rgb = match image.as_rgb8() {
            Some(rgb) => rgb,
            None => {
                converted = image.to_rgb8();
                &converted
            }
        };
        self.apply_rgb(rgb.as_raw(), rgb.width(), rgb.height(), out);
    }

    /// [`Self::apply`] for 8-bit RGB pixels, row-major, `width * height * 3` bytes (as numpy's [H, W, 3]).
    pub(crate) fn apply_rgb(&self, pixels: &[u8], width: u32, height: u32, out: &mut [f32]) {
        let (h, w) = (self.height, self.width);
        let resized = self.resize(pixels, width, height);
        let plane = (h * w) as usize;
        let source_channel = |c: usize| match self.colour {
            ColourOrder::Rgb => c,
            ColourOrder::Bgr => 2 - c,
        };
        let scale = self.std.map(|s| 1.0 / s);
        for (i, pixel) in resized.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let v = (pixel[source_channel(c)] as f32 - self.mean[c]) * scale[c];
                match self.layout {
                    Layout::Nchw => out[c * plane + i] = v,
                    Layout::Nhwc => out[i * 3 + c] = v,
                }
            }
        }
    }

    /// The resized (and cropped) RGB pixels, `width * height * 3` bytes. The crop is taken from the source
    /// as a fractional box, so nothing larger than the output is ever allocated (a 10000x10 image is fine),
    /// and pixel values equal Pillow's resize-then-crop.
    fn resize(&self, pixels: &[u8], source_width: u32, source_height: u32) -> Vec<u8> {
        let (left, top, width, height) = self.source_box(source_width, source_height);
        let mut output = Image::new(self.width, self.height, PixelType::U8x3);
        let source = ImageRef::new(source_width, source_height, pixels, PixelType::U8x3);
        let options = ResizeOptions::new()
            .resize_alg(self.interpolation.algorithm())
            .crop(left, top, width, height);
        match source.map(|source| Resizer::new().resize(&source, &mut output, &options)) {
            Ok(Ok(())) => output.into_vec(),
            // Callers pass buffers that fit their size and the box lies inside; mid-grey keeps going.
            _ => vec![127; self.tensor_len()],
        }
    }

    /// The part of the source the output shows, as (left, top, width, height) in source pixels.
    /// `Resize::Crop` follows timm and torchvision: the shorter side becomes floor(size / crop_pct) (the
    /// longer one truncated to keep the aspect ratio), then a centre crop at offsets rounded half to even.
    pub(crate) fn source_box(&self, width: u32, height: u32) -> (f64, f64, f64, f64) {
        let (w, h) = (self.width as f64, self.height as f64);
        let (src_w, src_h) = (width.max(1) as f64, height.max(1) as f64);
        if self.resize == Resize::Stretch {
            return (0.0, 0.0, src_w, src_h);
        }
        let pct = self.crop_pct as f64;
        let (resized_w, resized_h) = if self.height == self.width {
            let short = (h / pct).floor();
            if src_w <= src_h {
                (short, (short * src_h / src_w).floor())
            } else {
                ((short * src_w / src_h).floor(), short)
            }
        } else {
            ((w / pct).floor(), (h / pct).floor())
        };
        let (resized_w, resized_h) = (resized_w.max(w), resized_h.max(h));
        let left = ((resized_w - w) / 2.0).round_ties_even();
        let top = ((resized_h - h) / 2.0).round_ties_even();
        let (sx, sy) = (src_w / resized_w, src_h / resized_h);
        (left * sx, top * sy, w * sx, h * sy)
    }

    /// By how much a JPEG of `width` x `height` (as displayed) may shrink while it is decoded: the largest of 8, 4
    /// and 2 at which the part the output shows still covers twice the output size, so the resize still reduces
    /// by 2x or more and filters what the reduced decode leaves sharp (Pillow's `thumbnail` keeps the same gap).
    /// With no gap, a photo's embedding fell to cosine 0.982 of full decoding; with 2x the benchmark's photos
    /// stay above 0.996. 1 when decoding is exact or no shrink leaves enough.
    pub fn jpeg_shrink(&self, width: u32, height: u32) -> u32 {
        if self.jpeg_decode == JpegDecode::Exact {
            return 1;
        }
        let (_, _, shown_width, shown_height) = self.source_box(width, height);
        [8, 4, 2]
            .into_iter()
            .find(|&shrink| {
                shown_width / shrink as f64 >= 2.0 * self.width as f64
                    && shown_height / shrink as f64 >= 2.0 * self.height as f64
            })
            .unwrap_or(1)
    }

    /// One line for users: what their images go through.
    pub fn describe(&self) -> String {
        let resize = match self.resize {
            Resize::Crop => format!("resize shorter side then centre-crop {:.3}", self.crop_pct),
            Resize::Stretch => "stretch".into(),
        };
        let jpeg = match self.jpeg_decode {
            JpegDecode::Scaled => ", large jpegs decoded at reduced scale",
            JpegDecode::Exact => "",
        };
        format!(
            "{}x{} {resize}, {:?}, mean {:?} std {:?} (0-255), {:?} {:?}{jpeg}",
            self.width,
            self.height,
            self.interpolation,
            self.mean,
            self.std,
            self.layout,
            self.colour
        )
        .to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timm_config() {
        let o = PreprocessOverrides::from_json(&json!({"pretrained_cfg": {
            "input_size": [3, 256, 256], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "crop_pct": 0.95, "interpolation": "bicubic"}}))
        .unwrap();
        assert_eq!(o.size, Some((256, 256)));
        assert_eq!(o.mean, Some([127.5; 3]));
        assert_eq!(o.crop_pct, Some(0.95));
        assert_eq!(o.interpolation, Some(Interpolation::Bicubic));
    }

    #[test]
    fn hugging_face_config() {
        let o = PreprocessOverrides::from_json(&json!({
            "do_resize": true, "size": {"shortest_edge": 256}, "resample": 3,
            "do_center_crop": true, "crop_size": {"height": 224, "width": 224},
            "do_rescale": true, "rescale_factor": 0.00392156862745098,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}))
        .unwrap();
        assert_eq!(o.size, Some((224, 224)));
        assert_eq!(o.resize, Some(Resize::Crop));
        assert_eq!(o.crop_pct, Some(0.875));
        assert_eq!(o.interpolation, Some(Interpolation::Bicubic));
        assert!((o.mean.unwrap()[0] - 123.675).abs() < 1e-3);

        let vit = PreprocessOverrides::from_json(&json!({
            "size": {"height": 224, "width": 224}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
        .unwrap();
        assert_eq!(vit.resize, Some(Resize::Stretch));
        assert_eq!(vit.size, Some((224, 224)));
    }

    #[test]
    fn pixel_unit_config_with_layout_and_colour() {
        let o = PreprocessOverrides::from_json(&json!({
            "mean": [104, 117, 123], "std": 1, "layout": "NHWC", "colour": "bgr"}))
        .unwrap();
        assert_eq!(o.mean, Some([104.0, 117.0, 123.0]));
        assert_eq!(o.std, Some([1.0; 3]));
        assert_eq!(o.layout, Some(Layout::Nhwc));
        assert_eq!(o.colour, Some(ColourOrder::Bgr));
    }

    #[test]
    fn bad_configs_are_errors() {
        for bad in [
            json!([1, 2]),
            json!({"mean": [1, 2]}),
            json!({"std": [0, 1, 1]}),
            json!({"input_size": [1, 224, 224]}),
            json!({"crop_pct": 1.5}),
            json!({"interpolation": "magic"}),
            json!({"layout": "chw"}),
        ] {
            assert!(
                PreprocessOverrides::from_json(&bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn layout_colour_and_normalisation_reach_the_tensor() {
        let mut image = image::RgbImage::new(2, 1);
        image.put_pixel(0, 0, image::Rgb([10, 20, 30]));
        image.put_pixel(1, 0, image::Rgb([40, 50, 60]));
        let image = DynamicImage::ImageRgb8(image);
        let mut p = ImagePreprocess {
            height: 1,
            width: 2,
            resize: Resize::Stretch,
            crop_pct: 1.0,
            interpolation: Interpolation::Nearest,
            mean: [1.0, 2.0, 3.0],
            std: [1.0, 2.0, 1.0],
            layout: Layout::Nchw,
            colour: ColourOrder::Rgb,
            jpeg_decode: JpegDecode::Exact,
        };
        let mut out = vec![0.0; p.tensor_len()];
        p.apply(&image, &mut out);
        assert_eq!(out, [9.0, 39.0, 9.0, 24.0, 27.0, 57.0]);
        p.layout = Layout::Nhwc;
        p.colour = ColourOrder::Bgr;
        p.apply(&image, &mut out);
        assert_eq!(out, [29.0, 9.0, 7.0, 59.0, 24.0, 37.0]);
    }

    #[test]
    fn jpegs_shrink_while_twice_the_shown_size_remains() {
        let p = ImagePreprocess::default();
        // The centre crop shows 224/256 of the shorter side: 2x the output needs a shown side of 448.
        assert_eq!(p.jpeg_shrink(640, 480), 1);
        assert_eq!(p.jpeg_shrink(1600, 1200), 2);
        assert_eq!(p.jpeg_shrink(1200, 1600), 2);
        assert_eq!(p.jpeg_shrink(4000, 3000), 4);
        assert_eq!(p.jpeg_shrink(8000, 4500), 8);
        assert_eq!(p.jpeg_shrink(10_000, 10), 1, "the short side decides");
        let exact = ImagePreprocess {
            jpeg_decode: JpegDecode::Exact,
            ..p.clone()
        };
        assert_eq!(exact.jpeg_shrink(8000, 4500), 1);
        let stretch = ImagePreprocess {
            resize: Resize::Stretch,
            ..p
        };
        assert_eq!(stretch.jpeg_shrink(900, 3000), 2);
    }

    #[test]
    fn files_from_before_scaled_decoding_read_as_exact_and_exact_writes_as_before() {
        let mut json = serde_json::to_value(ImagePreprocess::default()).unwrap();
        assert_eq!(json["jpeg_decode"], "scaled");
        json.as_object_mut().unwrap().remove("jpeg_decode");
        let old: ImagePreprocess = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(old.jpeg_decode, JpegDecode::Exact);
        assert_eq!(serde_json::to_value(&old).unwrap(), json);
    }

    #[test]
    fn source_box_follows_resize_then_centre_crop() {
        let p = ImagePreprocess::default();
        // 256x256 stays 256x256, crop 224 at offset 16.
        assert_eq!(p.source_box(256, 256), (16.0, 16.0, 224.0, 224.0));
        // 451x300 is resized to 384x256 (truncated), crop offsets (80, 16).
        let (l, t, w, h) = p.source_box(451, 300);
        assert!((l - 80.0 * 451.0 / 384.0).abs() < 1e-9 && (t - 16.0 * 300.0 / 256.0).abs() < 1e-9);
        assert!(
            (w - 224.0 * 451.0 / 384.0).abs() < 1e-9 && (h - 224.0 * 300.0 / 256.0).abs() < 1e-9
        );
        // Extreme aspect ratios stay inside the source.
        let (l, t, w, h) = p.source_box(10, 10000);
        assert!(l >= 0.0 && t >= 0.0 && l + w <= 10.0 + 1e-9 && t + h <= 10000.0 + 1e-9);
        let stretch = ImagePreprocess {
            resize: Resize::Stretch,
            ..p
        };
        assert_eq!(stretch.source_box(7, 5), (0.0, 0.0, 7.0, 5.0));
    }

    #[test]
    fn tiny_and_extreme_images_resize() {
        let p = ImagePreprocess::default();
        let mut out = vec![0.0; p.tensor_len()];
        for (w, h) in [(1, 1), (10000, 10), (10, 10000)] {
            let image = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
                w,
                h,
                image::Rgb([200, 100, 50]),
            ));
            p.apply(&image, &mut out);
            let expected = (200.0 - p.mean[0]) / p.std[0];
            assert!((out[0] - expected).abs() < 1e-5, "{w}x{h}: {}", out[0]);
        }
    }
}
