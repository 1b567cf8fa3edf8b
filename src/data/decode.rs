//! Decoding files into RGB images: the format is told by the content, not the extension; EXIF orientation is
//! applied; grayscale, alpha, 16-bit, palette and CMYK become 8-bit RGB; a pixel-count limit stops a hostile
//! header from exhausting memory.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};

/// The default decode limit: 64 megapixels (8000 x 8000).
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// Opens and decodes an image file with the default limit.
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, DEFAULT_MAX_PIXELS).map_err(|message| Error::input(path, message))
}

/// A skip reason on one line: decoders' messages can end in (or contain) line breaks.
fn reason(what: &str, error: impl std::fmt::Display) -> String {
    let message = error.to_string();
    format!(
        "{what}: {}",
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// Decodes an image from its bytes into 8-bit RGB, oriented as its EXIF data says. The error is a reason
/// fit for a skip report.
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> std::result::Result<DynamicImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| reason("cannot read", e))?;
    if reader.format().is_none() {
        return Err("not an image (content is not JPEG, PNG, WebP, GIF, BMP or TIFF)".into());
    }
    let mut limits = Limits::default();
    // Room for the decoded image and a converted copy, whatever its sample size.
    limits.max_alloc = Some(max_pixels.saturating_mul(16));
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| reason("cannot decode", e))?;
    let (width, height) = decoder.dimensions();
    let pixels = width as u64 * height as u64;
    if pixels > max_pixels {
        return Err(format!(
            "{width}x{height} is {pixels} pixels, over the limit of {max_pixels}"
        ));
    }
    if pixels == 0 {
        return Err("the image has no pixels".into());
    }
    let orientation = decoder
        .orientation()
        .map_err(|e| reason("cannot read orientation", e))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| reason("cannot decode", e))?;
    image.apply_orientation(orientation);
    Ok(DynamicImage::ImageRgb8(into_rgb8(image)))
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
            let decoded = decode_image(&encode(&rgba, format), DEFAULT_MAX_PIXELS).unwrap();
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
        let decoded = decode_image(&encode(&gray16, ImageFormat::Png), DEFAULT_MAX_PIXELS).unwrap();
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
        let decoded = decode_image(&jpeg, DEFAULT_MAX_PIXELS).unwrap().to_rgb8();
        assert_eq!(decoded.dimensions(), (4, 2));
        assert!(
            decoded.get_pixel(0, 0).0[0] > 128,
            "the white corner is back at the top left"
        );
    }

    #[test]
    fn limits_and_garbage() {
        let big = DynamicImage::ImageRgb8(image::RgbImage::new(100, 100));
        let err = decode_image(&encode(&big, ImageFormat::Png), 9_999).unwrap_err();
        assert!(err.contains("over the limit"), "{err}");
        assert!(
            decode_image(b"hello, I am a text file", DEFAULT_MAX_PIXELS)
                .unwrap_err()
                .contains("not an image")
        );
        assert!(decode_image(b"", DEFAULT_MAX_PIXELS).is_err());
        let png = encode(&big, ImageFormat::Png);
        assert!(
            decode_image(&png[..png.len() / 2], DEFAULT_MAX_PIXELS)
                .unwrap_err()
                .contains("cannot decode")
        );
    }
}
