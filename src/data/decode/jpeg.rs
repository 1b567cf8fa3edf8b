//! JPEG decoding. A JPEG stores 8x8 blocks of frequencies, so it can be decoded at 1/2, 1/4 or 1/8 scale by
//! inverting only the lower frequencies: a 12-megapixel photo for a 224x224 input never becomes 12 million
//! pixels. That is done by libjpeg-turbo's decoder (through the mozjpeg crate; it is what Pillow's `draft()`
//! uses); full-size decoding stays with zune-jpeg (the image crate's decoder), which is faster there without
//! SIMD. Both are asked to refuse corrupt data rather than fill it in.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;

use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};
use mozjpeg_sys::{J_COLOR_SPACE, jpeg_common_struct, jpeg_error_mgr};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;
use zune_jpeg::errors::DecodeErrors;

use super::{DecodeOptions, DecodePlan, check_size, into_rgb8, progressive};
use crate::preprocess::{ImagePreprocess, JpegDecode};

/// Scans a JPEG may have, at any scale: zune-jpeg's own limit for progressive files, given to libjpeg too,
/// which would otherwise entropy-decode thousands of scans (a few hundred bytes each) one after another.
const MAX_SCANS: usize = 100;

/// What decoding needs to know before the pixels: the stored size, how EXIF says to turn it, and whether
/// libjpeg can decode it to RGB (not CMYK).
struct Header {
    width: u32,
    height: u32,
    orientation: Orientation,
    rgb: bool,
}

impl Header {
    fn read(decoder: &mut JpegDecoder<ZCursor<&[u8]>>) -> Result<Self, String> {
        decoder.decode_headers().map_err(undecodable)?;
        let (width, height) = decoder
            .dimensions()
            .ok_or("cannot decode: the JPEG header has no size")?;
        let orientation = decoder
            .exif()
            .and_then(|exif| Orientation::from_exif_chunk(exif))
            .unwrap_or(Orientation::NoTransforms);
        let rgb = !matches!(
            decoder.input_colorspace(),
            Some(ColorSpace::CMYK | ColorSpace::YCCK)
        );
        Ok(Header {
            width: width as u32,
            height: height as u32,
            orientation,
            rgb,
        })
    }

    /// The reduced-scale factor `preprocess` allows, judged on the image as displayed.
    fn shrink(&self, preprocess: Option<&ImagePreprocess>) -> u32 {
        let turned = matches!(
            self.orientation,
            Orientation::Rotate90
                | Orientation::Rotate270
                | Orientation::Rotate90FlipH
                | Orientation::Rotate270FlipH
        );
        let (shown_width, shown_height) = if turned {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        };
        match preprocess {
            Some(preprocess) if self.rgb => preprocess.jpeg_shrink(shown_width, shown_height),
            _ => 1,
        }
    }
}

/// By how much [`decode`] will shrink this JPEG for `preprocess` (1 if the header cannot be read).
pub(super) fn plan(bytes: &[u8], preprocess: &ImagePreprocess) -> DecodePlan {
    match Header::read(&mut zune_decoder(bytes, false)) {
        Ok(header) => DecodePlan {
            size: Some((header.width, header.height)),
            shrink: match preprocess.jpeg_decode {
                JpegDecode::Exact => 1,
                _ => header.shrink(Some(preprocess)),
            },
        },
        Err(_) => DecodePlan {
            size: None,
            shrink: 1,
        },
    }
}

pub(super) fn decode(
    bytes: &[u8],
    options: &DecodeOptions,
    preprocess: Option<&ImagePreprocess>,
) -> Result<DynamicImage, String> {
    // Start-of-scan markers, counted where a decoder would find them: an 0xFF in scan data is stuffed, so
    // each one is a scan (or one in an embedded thumbnail's; the limit leaves room for those).
    let scans = memchr::memmem::find_iter(bytes, &[0xFF, 0xDA])
        .take(MAX_SCANS + 1)
        .count();
    if scans > MAX_SCANS {
        return Err(super::reason(
            "cannot decode",
            format!("more than {MAX_SCANS} scans"),
        ));
    }
    let strict = !options.allow_truncated;
    // Headers are read leniently: strictness matters for the pixels (below).
    let mut decoder = zune_decoder(bytes, false);
    let header = Header::read(&mut decoder)?;
    let (width, height) = (header.width, header.height);
    check_size(width, height, options.max_pixels)?;
    let orientation = header.orientation;
    let shrink = header.shrink(preprocess);
    let scaled = match shrink {
        1 => None,
        _ => match decode_scaled(bytes, shrink, strict, options.max_pixels) {
            Ok(scaled) => scaled,
            // libjpeg gives up on some damage that zune-jpeg decodes around, as decoding did before.
            Err(_) if !strict => None,
            Err(reason) => return Err(reason),
        },
    };
    let mut image = match scaled {
        Some(image) => DynamicImage::ImageRgb8(image),
        None if !strict => decode_full(decoder, width, height).map_err(undecodable)?,
        None => match decode_full(zune_decoder(bytes, true), width, height) {
            // Stray bytes between segments are common in camera files and harm nothing (libjpeg only warns).
            Err(DecodeErrors::FormatStatic(message)) if message.contains("Extra bytes") => {
                decode_full(decoder, width, height).map_err(undecodable)?
            }
            decoded => decoded.map_err(undecodable)?,
        },
    };
    image.apply_orientation(orientation);
    Ok(DynamicImage::ImageRgb8(into_rgb8(image)))
}

fn zune_decoder(bytes: &[u8], strict: bool) -> JpegDecoder<ZCursor<&[u8]>> {
    let settings = DecoderOptions::default()
        .set_strict_mode(strict)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_max_scans(MAX_SCANS);
    JpegDecoder::new_with_options(ZCursor::new(bytes), settings)
}

/// Every pixel, through zune-jpeg.
fn decode_full(
    mut decoder: JpegDecoder<ZCursor<&[u8]>>,
    width: u32,
    height: u32,
) -> Result<DynamicImage, DecodeErrors> {
    let gray = matches!(
        decoder.input_colorspace(),
        Some(ColorSpace::Luma | ColorSpace::LumaA)
    );
    let output = if gray {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(output));
    let pixels = decoder.decode()?;
    let image = if gray {
        image::GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    };
    image.ok_or(DecodeErrors::FormatStatic(
        "the decoder returned fewer pixels than the header declares",
    ))
}

fn undecodable(error: DecodeErrors) -> String {
    let what = match error {
        DecodeErrors::Unsupported(_) => "cannot decode",
        DecodeErrors::ExhaustedData => "truncated",
        _ => "corrupt data",
    };
    // zune-jpeg quotes its messages.
    super::reason(what, error.to_string().trim_matches('"'))
}

thread_local! {
    /// The first warning libjpeg gave about damaged data during the current decode on this thread.
    static DAMAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Warnings that mean the data is damaged; others (extraneous bytes between segments, say) are common in
/// files that decode correctly.
const DAMAGE_WARNINGS: [i32; 5] = [
    mozjpeg_sys::JWRN_HIT_MARKER,
    mozjpeg_sys::JWRN_HUFF_BAD_CODE,
    mozjpeg_sys::JWRN_JPEG_EOF,
    mozjpeg_sys::JWRN_MUST_RESYNC,
    mozjpeg_sys::JWRN_NOT_SEQUENTIAL,
];

/// At 1/`shrink` scale through libjpeg-turbo, without the scans that scale can do without. `None` for colour
/// spaces it cannot turn into RGB (CMYK, which the header check already keeps away): those are decoded in full.
fn decode_scaled(
    bytes: &[u8],
    shrink: u32,
    strict: bool,
    max_pixels: u64,
) -> Result<Option<RgbImage>, String> {
    let bytes = progressive::without_fine_scans(bytes, shrink);
    decode_every_scan_scaled(&bytes, shrink, strict, max_pixels)
}

fn decode_every_scan_scaled(
    bytes: &[u8],
    shrink: u32,
    strict: bool,
    max_pixels: u64,
) -> Result<Option<RgbImage>, String> {
    DAMAGE.with(|damage| damage.borrow_mut().take());
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| -> std::io::Result<_> {
        let mut decompress = mozjpeg::Decompress::builder()
            .with_err(error_manager())
            .from_mem(bytes)?;
        // The limit was checked on zune-jpeg's reading of the header; a hostile file could read otherwise here.
        let (width, height) = decompress.size();
        if width as u64 * height as u64 > max_pixels {
            return Err(std::io::Error::other(format!(
                "libjpeg reads the header as {width}x{height}, over the limit of {max_pixels} pixels"
            )));
        }
        if !matches!(
            decompress.color_space(),
            J_COLOR_SPACE::JCS_YCbCr | J_COLOR_SPACE::JCS_GRAYSCALE | J_COLOR_SPACE::JCS_RGB
        ) {
            return Ok(None);
        }
        // 8 / shrink is 1, 2 or 4 eighths.
        decompress.scale((8 / shrink) as u8);
        let mut started = decompress.rgb()?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        Ok(Some((width, height, pixels)))
    }));
    let damage = DAMAGE.with(|damage| damage.borrow_mut().take());
    let decoded = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(error)) => return Err(super::reason("corrupt data", error)),
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "the JPEG decoder failed".into());
            return Err(super::reason("corrupt data", message));
        }
    };
    if strict && let Some(damage) = damage {
        return Err(super::reason("corrupt data", damage));
    }
    let Some((width, height, pixels)) = decoded else {
        return Ok(None);
    };
    RgbImage::from_raw(width, height, pixels)
        .map(Some)
        .ok_or_else(|| "cannot decode: the decoder returned fewer pixels than it declared".into())
}

/// libjpeg's standard error manager, except that a fatal error unwinds back to [`decode_scaled`] (the C is
/// built with unwind tables) and damage warnings are remembered instead of printed.
fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills in every field of the zeroed struct.
    let mut manager: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut manager) };
    manager.error_exit = Some(fail);
    manager.emit_message = Some(warn);
    manager
}

extern "C-unwind" fn fail(info: &mut jpeg_common_struct) {
    std::panic::resume_unwind(Box::new(message(info)));
}

extern "C-unwind" fn warn(info: &mut jpeg_common_struct, level: std::os::raw::c_int) {
    // Negative levels are warnings; others are trace messages.
    // SAFETY: libjpeg calls this with its error manager set.
    let code = unsafe { (*info.err).msg_code };
    if level < 0 && DAMAGE_WARNINGS.contains(&code) {
        let text = message(info);
        DAMAGE.with(|damage| {
            damage.borrow_mut().get_or_insert(text);
        });
    }
}

/// libjpeg's text for its current message.
fn message(info: &mut jpeg_common_struct) -> String {
    // JMSG_LENGTH_MAX: libjpeg writes at most this much, more than the binding's declared 80.
    let mut buffer = [0u8; 200];
    // SAFETY: the error manager is set while libjpeg calls back; format_message writes a NUL-terminated
    // string of at most JMSG_LENGTH_MAX bytes into the buffer it is given.
    unsafe {
        let Some(format) = (*info.err).format_message else {
            return format!("libjpeg message {}", (*info.err).msg_code);
        };
        let format: unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8) =
            std::mem::transmute(format);
        format(info, buffer.as_mut_ptr());
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured 640x480 image encoded progressive (libjpeg's standard scans), quality 90.
    fn progressive_jpeg() -> Vec<u8> {
        let image = RgbImage::from_fn(640, 480, |x, y| {
            let wave = ((x as f32 / 7.0).sin() * (y as f32 / 5.0).cos() * 60.0) as i32;
            let checker = if (x / 3 + y / 4) % 2 == 0 { 25 } else { -25 };
            let level = |base: i32| (base + wave + checker).clamp(0, 255) as u8;
            image::Rgb([level((x / 3) as i32), level((y / 2) as i32), level(128)])
        });
        let mut compress = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        compress.set_fastest_defaults();
        compress.set_progressive_mode();
        compress.set_size(640, 480);
        compress.set_quality(90.0);
        let mut started = compress.start_compress(Vec::new()).unwrap();
        started.write_scanlines(image.as_raw()).unwrap();
        started.finish().unwrap()
    }

    /// The pattern is a worst case (sharp 3-pixel checks: much of its energy is in the cut bits); photos move
    /// far less (tests/embed.rs compares their embeddings).
    #[test]
    fn cutting_the_last_bit_scans_moves_pixels_by_a_few_levels() {
        let bytes = progressive_jpeg();
        for shrink in [2, 4, 8] {
            let cut = progressive::without_fine_scans(&bytes, shrink);
            assert!(
                cut.len() < bytes.len() * 4 / 5,
                "{} of {}",
                cut.len(),
                bytes.len()
            );
            let cut = decode_scaled(&bytes, shrink, true, u64::MAX)
                .unwrap()
                .unwrap();
            let whole = decode_every_scan_scaled(&bytes, shrink, true, u64::MAX)
                .unwrap()
                .unwrap();
            assert_eq!(cut.dimensions(), whole.dimensions());
            let difference: u64 = cut
                .as_raw()
                .iter()
                .zip(whole.as_raw())
                .map(|(&a, &b)| u64::from(a.abs_diff(b)))
                .sum();
            let mean = difference as f64 / cut.as_raw().len() as f64;
            assert!(
                mean > 0.0 && mean < 3.0,
                "1/{shrink}: mean |difference| {mean}"
            );
        }
    }
}
