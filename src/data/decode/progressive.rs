//! A progressive JPEG arrives as a series of scans, each adding frequencies or a bit of precision to the
//! coefficients, and a decoder entropy-decodes every one of them whatever the output scale. The scans that only
//! add the least significant bit of the AC coefficients carry a third to a half of a camera photo's bytes and
//! most of its decoding time; shrunk at least twofold, the image changes by at most one quantisation step of
//! those coefficients without them. They are cut out of the bytes before libjpeg sees them at reduced scale.

use std::borrow::Cow;

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
/// TEM, a marker with no length (so are the restart markers).
const STANDALONE: u8 = 0x01;
/// Start of frame, progressive, Huffman-coded (arithmetic-coded progressive files are left whole).
const SOF_PROGRESSIVE: u8 = 0xC2;

/// `bytes` without their last-bit AC scans when decoding at 1/`shrink` (2, 4 or 8). The bytes as given when
/// nothing is cut: no shrink, the file is not progressive, or its markers do not parse to the end (libjpeg then
/// reports what is wrong).
pub(super) fn without_fine_scans(bytes: &[u8], shrink: u32) -> Cow<'_, [u8]> {
    match cut(bytes, shrink) {
        Some(cut) => Cow::Owned(cut),
        None => Cow::Borrowed(bytes),
    }
}

fn cut(bytes: &[u8], shrink: u32) -> Option<Vec<u8>> {
    if shrink < 2 || bytes.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut kept = Vec::with_capacity(bytes.len());
    kept.extend_from_slice(&bytes[..2]);
    let mut progressive = false;
    let mut skipped = false;
    let mut at = 2;
    loop {
        let (marker, start) = next_marker(bytes, at)?;
        if marker == EOI {
            kept.extend_from_slice(&bytes[at..]);
            break;
        }
        if marker == STANDALONE || (0xD0..=0xD7).contains(&marker) {
            kept.extend_from_slice(&bytes[start..start + 2]);
            at = start + 2;
            continue;
        }
        let length = usize::from(u16::from_be_bytes([
            *bytes.get(start + 2)?,
            *bytes.get(start + 3)?,
        ]));
        let header_end = start.checked_add(2 + length)?;
        let header = bytes.get(start + 4..header_end)?;
        progressive |= marker == SOF_PROGRESSIVE;
        if marker == SOS && !progressive {
            // A baseline frame: nothing to cut, and no need to walk its data.
            return None;
        }
        let end = if marker == SOS {
            entropy_end(bytes, header_end)
        } else {
            header_end
        };
        if marker == SOS && needless(header)? {
            skipped = true;
        } else {
            kept.extend_from_slice(&bytes[start..end]);
        }
        at = end;
    }
    skipped.then_some(kept)
}

/// The next marker at or after `at` (fill bytes 0xFF before it allowed): its code and where its 0xFF is.
fn next_marker(bytes: &[u8], at: usize) -> Option<(u8, usize)> {
    if *bytes.get(at)? != 0xFF {
        return None;
    }
    let code_at = at + bytes.get(at..)?.iter().position(|&b| b != 0xFF)?;
    Some((bytes[code_at], code_at - 1))
}

/// Where a scan's entropy-coded data ends: at the first marker that is neither a stuffed zero byte nor a
/// restart marker (the end of the file if none).
fn entropy_end(bytes: &[u8], from: usize) -> usize {
    let mut at = from;
    while let Some(offset) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == 0xFF))
    {
        let ff = at + offset;
        match bytes.get(ff + 1) {
            Some(0x00 | 0xD0..=0xD7) => at = ff + 2,
            Some(0xFF) => at = ff + 1,
            Some(_) => return ff,
            None => break,
        }
    }
    bytes.len()
}

/// Whether a scan (its SOS header) only refines the least significant bit of AC coefficients. `None` for a
/// header too short for its component count.
fn needless(header: &[u8]) -> Option<bool> {
    let components = usize::from(*header.first()?);
    let spectral_start = *header.get(1 + 2 * components)?;
    let approximation = *header.get(3 + 2 * components)?;
    let (high_bit, low_bit) = (approximation >> 4, approximation & 0x0F);
    Some(spectral_start > 0 && high_bit > 0 && low_bit == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up progressive stream: SOI, SOF2, one DC scan, one AC first pass, one AC last-bit refinement
    /// (with a stuffed zero and a restart marker in its data), EOI.
    fn stream() -> Vec<u8> {
        let mut bytes = vec![0xFF, SOI];
        bytes.extend([
            0xFF,
            SOF_PROGRESSIVE,
            0x00,
            0x0B,
            8,
            0,
            16,
            0,
            16,
            1,
            1,
            0x11,
            0,
        ]);
        let scan = |ss: u8, se: u8, ah_al: u8, data: &[u8]| {
            let mut scan = vec![0xFF, SOS, 0x00, 0x08, 1, 1, 0x00, ss, se, ah_al];
            scan.extend_from_slice(data);
            scan
        };
        bytes.extend(scan(0, 0, 0x00, &[0x12, 0x34]));
        bytes.extend(scan(1, 63, 0x01, &[0x56, 0xFF, 0x00, 0x78]));
        bytes.extend(scan(1, 63, 0x10, &[0x9A, 0xFF, 0xD0, 0xBC, 0xFF, 0x00]));
        bytes.extend([0xFF, 0xFF, EOI]);
        bytes
    }

    #[test]
    fn the_last_bit_scans_go_at_reduced_scale() {
        let bytes = stream();
        let scans: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i..].starts_with(&[0xFF, SOS]))
            .collect();
        assert_eq!(scans.len(), 3);
        // The fill byte before EOI goes with the scan it follows.
        let mut expected = bytes[..scans[2]].to_vec();
        expected.extend([0xFF, EOI]);
        for shrink in [2, 4, 8] {
            assert_eq!(
                without_fine_scans(&bytes, shrink).as_ref(),
                expected.as_slice()
            );
        }
        assert!(matches!(without_fine_scans(&bytes, 1), Cow::Borrowed(_)));
    }

    #[test]
    fn baseline_truncated_and_garbled_files_are_left_whole() {
        let mut baseline = stream();
        baseline[3] = 0xC0;
        assert!(matches!(without_fine_scans(&baseline, 4), Cow::Borrowed(_)));
        let bytes = stream();
        for end in 0..bytes.len() - 1 {
            let truncated = &bytes[..end];
            assert!(
                matches!(without_fine_scans(truncated, 4), Cow::Borrowed(_)),
                "{end}"
            );
        }
        let mut garbled = stream();
        garbled[2] = 0x12;
        assert!(matches!(without_fine_scans(&garbled, 4), Cow::Borrowed(_)));
    }
}
