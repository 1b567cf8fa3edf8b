//! Whether a file holds all the data it declares, checked from its structure before decoding: a JPEG decoder
//! fills a missing end with grey, a WebP decoder calls it a corrupt bitstream, and a GIF decoder is happy with
//! the first frame of a file cut later. BMP and TIFF decoders say "end of file" themselves.

use image::ImageFormat;

/// What is missing, if the file ends before its format says it does.
pub(super) fn missing_end(format: ImageFormat, bytes: &[u8]) -> Option<&'static str> {
    match format {
        ImageFormat::Jpeg => jpeg_missing_end(bytes),
        ImageFormat::Png => png_missing_end(bytes),
        ImageFormat::WebP => webp_missing_end(bytes),
        ImageFormat::Gif => gif_missing_end(bytes),
        _ => None,
    }
}

const JPEG_END: &str = "the data ends before the JPEG's end-of-image marker";

/// Walks the JPEG's segments and entropy-coded data to its end-of-image marker. Bytes after the marker
/// (cameras append previews and metadata there) do not matter.
fn jpeg_missing_end(bytes: &[u8]) -> Option<&'static str> {
    let mut at = 2; // after the start-of-image marker, which told the format
    loop {
        // The next marker: 0xFF (fill bytes may repeat it) and a code. Stray bytes between segments are
        // skipped, as decoders do.
        let Some(found) = memchr::memchr(0xFF, bytes.get(at..).unwrap_or_default()) else {
            return Some(JPEG_END);
        };
        at += found;
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let Some(&code) = bytes.get(at) else {
            return Some(JPEG_END);
        };
        at += 1;
        match code {
            0xD9 => return None,
            // Standalone markers: restarts, TEM, and a stuffed zero outside a scan.
            0x00 | 0x01 | 0xD0..=0xD8 => continue,
            _ => {}
        }
        let Some(length) = bytes.get(at..at + 2) else {
            return Some(JPEG_END);
        };
        let segment_end = at + u16::from_be_bytes([length[0], length[1]]) as usize;
        if segment_end > bytes.len() {
            // Damaged data can look like a segment running past the end: if an end-of-image marker follows,
            // the file is whole (and the decoder judges the damage).
            return memchr::memmem::find(&bytes[at..], b"\xFF\xD9")
                .is_none()
                .then_some(JPEG_END);
        }
        at = segment_end;
        if code == 0xDA {
            // Entropy-coded data runs to the first marker that is neither a stuffed 0xFF00 nor a restart.
            loop {
                let Some(found) = memchr::memchr(0xFF, &bytes[at..]) else {
                    return Some(JPEG_END);
                };
                at += found;
                match bytes.get(at + 1) {
                    None => return Some(JPEG_END),
                    Some(0x00 | 0xD0..=0xD7 | 0xFF) => at += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Walks the PNG's chunks to IEND.
fn png_missing_end(bytes: &[u8]) -> Option<&'static str> {
    let missing = "the data ends before the PNG's IEND chunk";
    let mut at = 8; // the signature
    loop {
        let Some(header) = bytes.get(at..at + 8) else {
            return Some(missing);
        };
        if &header[4..8] == b"IEND" {
            // Length, type and CRC.
            return (bytes.len() < at + 12).then_some(missing);
        }
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        // Length, type, data, CRC.
        at = at.saturating_add(12).saturating_add(length);
    }
}

/// Walks the GIF's blocks to its trailer.
fn gif_missing_end(bytes: &[u8]) -> Option<&'static str> {
    const MISSING: &str = "the data ends before the GIF's trailer";
    let colour_table = |flags: u8| {
        if flags & 0x80 != 0 {
            3 << ((flags & 7) + 1)
        } else {
            0
        }
    };
    // Damaged sizes can also run the walk past the end: a file that ends in a trailer is whole (and the
    // decoder judges the damage).
    let missing = || (bytes.last() != Some(&0x3B)).then_some(MISSING);
    let Some(&flags) = bytes.get(10) else {
        return missing();
    };
    // Header and logical screen descriptor, then the global colour table.
    let mut at = 13 + colour_table(flags);
    // Data sub-blocks: a size byte and that many bytes, until a size of zero.
    let skip_sub_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let size = *bytes.get(at)? as usize;
            at += 1 + size;
            if size == 0 {
                return Some(at);
            }
        }
    };
    loop {
        let next = match bytes.get(at) {
            None => return missing(),
            Some(0x3B) => return None,
            // An extension: introducer, label, sub-blocks.
            Some(0x21) => skip_sub_blocks(at + 2),
            // An image: descriptor, local colour table, LZW code size, sub-blocks.
            Some(0x2C) => bytes
                .get(at + 9)
                .and_then(|&flags| skip_sub_blocks(at + 10 + colour_table(flags) + 1)),
            // Not a block: damage for the decoder to judge.
            Some(_) => return None,
        };
        match next {
            Some(next) => at = next,
            None => return missing(),
        }
    }
}

/// Compares the length the RIFF header declares with the file's.
fn webp_missing_end(bytes: &[u8]) -> Option<&'static str> {
    let short = "the file is shorter than its RIFF header declares";
    let Some(declared) = bytes.get(4..8) else {
        return Some(short);
    };
    let declared =
        u32::from_le_bytes([declared[0], declared[1], declared[2], declared[3]]) as usize;
    (bytes.len() < declared.saturating_add(8)).then_some(short)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, RgbImage};
    use std::io::Cursor;

    fn encoded(format: ImageFormat) -> Vec<u8> {
        let picture = RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(picture)
            .write_to(&mut out, format)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn whole_files_pass_and_every_cut_is_noticed() {
        for format in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::WebP,
            ImageFormat::Gif,
        ] {
            let bytes = encoded(format);
            assert_eq!(missing_end(format, &bytes), None, "{format:?}");
            for cut in [bytes.len() - 1, bytes.len() * 6 / 10, 20, 3] {
                assert!(
                    missing_end(format, &bytes[..cut]).is_some(),
                    "{format:?} cut to {cut} of {}",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn jpeg_trailers_restarts_and_fill_bytes_are_whole() {
        let mut bytes = encoded(ImageFormat::Jpeg);
        bytes.extend_from_slice(b"trailing camera data \xFF\x00 without an end");
        assert_eq!(jpeg_missing_end(&bytes), None);
        // A scan with a restart marker and fill bytes before the end-of-image marker.
        let scan = b"\xFF\xD8\xFF\xDA\x00\x02\x12\x34\xFF\x00\x56\xFF\xD0\x78\xFF\xFF\xD9";
        assert_eq!(jpeg_missing_end(scan), None);
        assert!(jpeg_missing_end(&scan[..scan.len() - 1]).is_some());
        // A segment whose declared length runs past the end, with and without an end-of-image marker after it
        // (damage that looks like a segment).
        assert!(jpeg_missing_end(b"\xFF\xD8\xFF\xE1\x10\x00abc").is_some());
        assert_eq!(
            jpeg_missing_end(b"\xFF\xD8\xFF\xE1\x10\x00abc\xFF\xD9"),
            None
        );
    }
}
