//! Decoding files into RGB images: the format is told by the content, not the extension; EXIF orientation is
//! applied; grayscale, alpha, 16-bit, palette and CMYK become 8-bit RGB; a pixel-count limit stops a hostile
//! header from exhausting memory. A file whose data ends early or is corrupt is refused with that reason
//! (a decoder would fill the gap with grey), unless the caller allows it. Large JPEGs are decoded at reduced
//! scale when a preprocessing says how much of them it needs (`jpeg`).

mod jpeg;
mod progressive;
mod whole;

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};
use crate::preprocess::ImagePreprocess;

/// The default decode limit: 64 megapixels (8000 x 8000).
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// What decoding accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Largest image, in pixels.
    pub max_pixels: u64,
    /// Decode what there is of a truncated or corrupt file (the decoder fills the rest) instead of refusing it.
    pub allow_truncated: bool,
}

setters!(DecodeOptions {
    max_pixels: u64,
    allow_truncated: bool,
});

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_pixels: DEFAULT_MAX_PIXELS,
            allow_truncated: false,
        }
    }
}

/// Opens and decodes an image file, every pixel, with the default options.
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    open_image_for(path, None)
}

/// Opens and decodes an image file as embedding does for `preprocess` (a large JPEG at reduced scale when it
/// says so), with the default options.
pub(crate) fn open_image_for(
    path: &Path,
    preprocess: Option<&ImagePreprocess>,
) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, &DecodeOptions::default(), preprocess)
        .map_err(|message| Error::input(path, message))
}

/// A skip reason on one line: decoders' messages can end in (or contain) line breaks.
fn reason(what: &str, error: impl std::fmt::Display) -> String {
    let message = error.to_string();
    format!(
        "{what}: {}",
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// Decodes an image from its bytes into 8-bit RGB, oriented as its EXIF data says. With `preprocess`, a JPEG
/// is decoded only as large as that preprocessing needs ([`ImagePreprocess::jpeg_shrink`]). The error is a
/// reason fit for a skip report: "truncated: …" and "corrupt data: …" for broken files.
pub fn decode_image(
    bytes: &[u8],
    options: &DecodeOptions,
    preprocess: Option<&ImagePreprocess>,
) -> std::result::Result<DynamicImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| reason("cannot read", e))?;
    let Some(format) = reader.format() else {
        return Err("not an image (content is not JPEG, PNG, WebP, GIF, BMP or TIFF)".into());
    };
    if !options.allow_truncated
        && let Some(missing) = whole::missing_end(format, bytes)
    {
        return Err(format!("truncated: {missing}"));
    }
    if format == ImageFormat::Jpeg {
        return jpeg::decode(bytes, options, preprocess);
    }
    let mut limits = Limits::default();
    // Room for the decoded image and a converted copy, whatever its sample size.
    limits.max_alloc = Some(options.max_pixels.saturating_mul(16));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, options.max_pixels)?;
    let orientation = decoder
        .orientation()
        .map_err(|e| reason("cannot read orientation", e))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    image.apply_orientation(orientation);
    Ok(DynamicImage::ImageRgb8(into_rgb8(image)))
}

/// Part of the cache key of a view decoded at reduced scale, raised whenever that decoding gives other pixels
/// (2: progressive JPEGs decode without their last-bit scans), so older rows are not mixed with newer ones.
pub(crate) const REDUCED_SCALE_REVISION: u32 = 2;

/// What a file's header says before it is decoded for `preprocess`, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecodePlan {
    /// Width and height as stored; `None` when the header cannot be read (decoding then says why).
    pub size: Option<(u32, u32)>,
    /// By how much [`decode_image`] will shrink the image: 1 unless it is a JPEG large enough for
    /// reduced-scale decoding.
    pub shrink: u32,
}

/// Reads only the header of these bytes: their size and how they will be decoded for `preprocess`.
pub(crate) fn plan_decoding(bytes: &[u8], preprocess: &ImagePreprocess) -> DecodePlan {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return jpeg::plan(bytes, preprocess);
    }
    let size = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|reader| reader.into_dimensions().ok());
    DecodePlan { size, shrink: 1 }
}

/// Refuses an image over the pixel limit or without pixels, before anything is allocated for it.
pub(crate) fn check_size(
    width: u32,
    height: u32,
    max_pixels: u64,
) -> std::result::Result<(), String> {
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(format!(
            "{width}x{height} is {pixels} pixels, over the limit of {max_pixels}"
        ));
    }
    if pixels == 0 {
        return Err("the image has no pixels".into());
    }
    Ok(())
}

/// Why a decoder gave up: the data ended (each decoder says so in its own words), the data is wrong, or the
/// file uses something the decoder does not support.
fn undecodable(error: ImageError) -> String {
    let message = error.to_string().to_lowercase();
    let ended = matches!(&error, ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
        || message.contains("end of file")
        || message.contains("failed to fill whole buffer");
    match error {
        _ if ended => reason("truncated", error),
        ImageError::Decoding(_) | ImageError::IoError(_) => reason("corrupt data", error),
        _ => reason("cannot decode", error),
    }
}

/// 8-bit RGB. The common 8-bit layouts are converted directly (the generic conversion is ~10x slower and
/// dominated decoding of grayscale datasets); alpha is dropped, as Pillow's `convert("RGB")` does.
fn into_rgb8(image: DynamicImage) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    let expand = |pixels: &[u8], channels: usize, map: fn(&[u8]) -> [u8; 3]| -> Vec<u8> {
        pixels.chunks_exact(channels).flat_map(map).collect()
    };
    let raw = match &image {
        DynamicImage::ImageRgb8(_) => return image.into_rgb8(),
        DynamicImage::ImageLuma8(gray) => expand(gray.as_raw(), 1, |p| [p[0]; 3]),
        DynamicImage::ImageLumaA8(gray) => expand(gray.as_raw(), 2, |p| [p[0]; 3]),
        DynamicImage::ImageRgba8(rgba) => expand(rgba.as_raw(), 4, |p| [p[0], p[1], p[2]]),
        other => return other.to_rgb8(),
    };
    RgbImage::from_raw(width, height, raw).unwrap_or_else(|| image.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgba};

    fn decode(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
        decode_image(bytes, &DecodeOptions::default(), None)
    }

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    #[test]
    fn formats_by_content_and_conversions_to_rgb() {
        let rgba =
            DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(3, 2, Rgba([200, 100, 50, 0])));
        for format in [
            ImageFormat::Png,
            ImageFormat::Bmp,
            ImageFormat::Tiff,
            ImageFormat::Gif,
            ImageFormat::WebP,
        ] {
            let decoded = decode(&encode(&rgba, format)).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (3, 2), "{format:?}");
            assert!(matches!(decoded, DynamicImage::ImageRgb8(_)));
        }
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(2, 1, image::Luma([7])));
        assert_eq!(into_rgb8(gray).as_raw(), &[7, 7, 7, 7, 7, 7]);
        let gray_alpha = DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
            1,
            1,
            image::LumaA([9, 0]),
        ));
        assert_eq!(into_rgb8(gray_alpha).as_raw(), &[9, 9, 9]);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(1, 1, Rgba([1, 2, 3, 4])));
        assert_eq!(into_rgb8(rgba).as_raw(), &[1, 2, 3]);
        let gray16 = DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(
            2,
            2,
            image::Luma([65535u16]),
        ));
        let decoded = decode(&encode(&gray16, ImageFormat::Png)).unwrap();
        assert_eq!(decoded.to_rgb8().get_pixel(0, 0).0, [255, 255, 255]);
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 4x2 image stored rotated, with EXIF orientation 6 ("rotate 90° clockwise to display").
        let mut upright = image::RgbImage::from_pixel(4, 2, image::Rgb([0, 0, 0]));
        upright.put_pixel(0, 0, image::Rgb([255, 255, 255]));
        let stored = DynamicImage::ImageRgb8(upright).rotate270();
        let mut jpeg = encode(&stored, ImageFormat::Jpeg);
        let exif: &[u8] = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00";
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        app1.extend_from_slice(exif);
        jpeg.splice(2..2, app1);
        let decoded = decode(&jpeg).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (4, 2));
        assert!(
            decoded.get_pixel(0, 0).0[0] > 128,
            "the white corner is back at the top left"
        );
    }

    #[test]
    fn limits_and_garbage() {
        let big = DynamicImage::ImageRgb8(image::RgbImage::new(100, 100));
        let err = decode_image(
            &encode(&big, ImageFormat::Png),
            &DecodeOptions {
                max_pixels: 9_999,
                ..Default::default()
            },
            None,
        )
        .unwrap_err();
        assert!(err.contains("over the limit"), "{err}");
        assert!(
            decode(b"hello, I am a text file")
                .unwrap_err()
                .contains("not an image")
        );
        assert!(decode(b"").is_err());
        let png = encode(&big, ImageFormat::Png);
        assert!(
            decode(&png[..png.len() / 2])
                .unwrap_err()
                .starts_with("truncated")
        );
    }

    /// A picture with enough detail that its compressed data is most of the file.
    fn detailed(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([((x * 7) ^ (y * 3)) as u8, (x * y) as u8, (x + y * 5) as u8])
        }))
    }

    /// Why decoding refused `bytes` (a decoded image's Debug output would be all its pixels).
    fn refusal(bytes: &[u8], preprocess: Option<&ImagePreprocess>) -> String {
        match decode_image(bytes, &DecodeOptions::default(), preprocess) {
            Ok(image) => format!("decoded {}x{}", image.width(), image.height()),
            Err(reason) => reason,
        }
    }

    /// `len` bytes from `at` overwritten with noise, as bit rot would.
    fn damaged(bytes: &[u8], at: usize, len: usize) -> Vec<u8> {
        let mut damaged = bytes.to_vec();
        let mut state = 12345u32;
        for byte in &mut damaged[at..at + len] {
            state = state.wrapping_mul(1103515245).wrapping_add(12345);
            *byte = (state >> 16) as u8;
        }
        damaged
    }

    #[test]
    fn truncated_and_corrupt_files_of_every_format_are_refused_with_their_reason() {
        let picture = detailed(320, 240);
        for format in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::WebP,
            ImageFormat::Gif,
            ImageFormat::Bmp,
            ImageFormat::Tiff,
        ] {
            let bytes = encode(&picture, format);
            let n = bytes.len();
            let cut = refusal(&bytes[..n * 6 / 10], None);
            assert!(cut.starts_with("truncated: "), "{format:?}: {cut}");
            // Damage where each format can notice it: entropy-coded or compressed data, or the header of
            // the formats that store raw pixels (any bytes are valid pixels there).
            let at = match format {
                ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif => n / 2,
                ImageFormat::Tiff => {
                    u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize + 2
                }
                _ => 20,
            };
            let corrupt = refusal(&damaged(&bytes, at, 64), None);
            assert!(
                corrupt.starts_with("corrupt data: "),
                "{format:?}: {corrupt}"
            );
            assert!(
                !corrupt.contains('\n') && !corrupt.contains('"'),
                "{corrupt}"
            );
        }
    }

    #[test]
    fn damaged_jpegs_are_refused_at_every_scale_and_allowed_on_request() {
        let jpeg = encode(&detailed(1600, 1200), ImageFormat::Jpeg);
        let preprocess = ImagePreprocess::default();
        assert_eq!(
            preprocess.jpeg_shrink(1600, 1200),
            2,
            "the reduced decode is tried"
        );
        let allow = DecodeOptions {
            allow_truncated: true,
            ..Default::default()
        };
        for target in [None, Some(&preprocess)] {
            let size = if target.is_some() {
                "800x600"
            } else {
                "1600x1200"
            };
            assert_eq!(refusal(&jpeg, target), format!("decoded {size}"));
            let cut = &jpeg[..jpeg.len() * 6 / 10];
            let reason = refusal(cut, target);
            assert!(reason.starts_with("truncated: "), "{size}: {reason}");
            let corrupt = damaged(&jpeg, jpeg.len() / 2, 256);
            let reason = refusal(&corrupt, target);
            assert!(reason.starts_with("corrupt data: "), "{size}: {reason}");
            // As before these checks existed: the decoder fills in what is missing or damaged (in full size
            // where libjpeg gives up).
            for bytes in [cut, &corrupt] {
                assert!(decode_image(bytes, &allow, target).is_ok(), "{size}");
            }
        }
    }

    #[test]
    fn reduced_decoding_keeps_the_picture() {
        // A smooth picture: what the 1/2-scale decode gives, resized, is what the full decode gives, resized.
        let smooth = DynamicImage::ImageRgb8(image::RgbImage::from_fn(1600, 1200, |x, y| {
            image::Rgb([(x / 7) as u8, (y / 5) as u8, ((x + y) / 11) as u8])
        }));
        let jpeg = encode(&smooth, ImageFormat::Jpeg);
        let preprocess = ImagePreprocess::default();
        let options = DecodeOptions::default();
        let (mut reduced, mut full) = (
            vec![0.0; preprocess.tensor_len()],
            vec![0.0; preprocess.tensor_len()],
        );
        let scaled = decode_image(&jpeg, &options, Some(&preprocess)).unwrap();
        assert_eq!((scaled.width(), scaled.height()), (800, 600));
        preprocess.apply(&scaled, &mut reduced);
        preprocess.apply(&decode_image(&jpeg, &options, None).unwrap(), &mut full);
        // In pixel units (std is about 57 for this preprocessing).
        let worst = reduced
            .iter()
            .zip(&full)
            .map(|(a, b)| (a - b).abs() * 57.0)
            .fold(0.0f32, f32::max);
        assert!(worst < 3.0, "largest difference {worst} pixel levels");
    }
}
