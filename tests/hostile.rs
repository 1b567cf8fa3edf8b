//! A tree of hostile inputs, through the real binary: every valid image is embedded (and oriented), every
//! invalid one is skipped with its reason, nothing panics, and `train` works on what is left.

mod common;

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use common::{headstart, headstart_peak_memory, jpeg_with_orientation};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// What a camera stores for `upright` when it tags the file with `orientation` (the tag says how to turn
/// the stored pixels upright; 6 and 8 undo each other, the others undo themselves).
fn stored_for(upright: &DynamicImage, orientation: u16) -> DynamicImage {
    use image::metadata::Orientation;
    let inverse = match orientation {
        6 => 8,
        8 => 6,
        other => other,
    };
    let mut stored = upright.clone();
    stored.apply_orientation(Orientation::from_exif(inverse as u8).unwrap());
    stored
}

/// A PNG whose header claims `width` x `height` pixels, with one tiny data chunk.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    fn chunk(kind: &[u8], data: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &header, &mut out);
    chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        &mut out,
    );
    chunk(b"IEND", &[], &mut out);
    out
}

/// An asymmetric picture: orientation mistakes change it.
/// The formats headstart reads, each cut short and damaged in the hostile tree.
const BROKEN_FORMATS: [(ImageFormat, &str); 6] = [
    (ImageFormat::Jpeg, "jpg"),
    (ImageFormat::Png, "png"),
    (ImageFormat::WebP, "webp"),
    (ImageFormat::Gif, "gif"),
    (ImageFormat::Bmp, "bmp"),
    (ImageFormat::Tiff, "tiff"),
];

/// A picture with enough detail that compressed data is most of its file.
fn detailed(width: u32, height: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
        Rgb([((x * 7) ^ (y * 3)) as u8, (x * y) as u8, (x + y * 5) as u8])
    }))
}

/// `len` bytes from `at` overwritten with noise, as bit rot would.
fn noise_over(bytes: &[u8], at: usize, len: usize) -> Vec<u8> {
    let mut damaged = bytes.to_vec();
    let mut state = 12345u32;
    for byte in &mut damaged[at..at + len] {
        state = state.wrapping_mul(1103515245).wrapping_add(12345);
        *byte = (state >> 16) as u8;
    }
    damaged
}

fn upright() -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(96, 64, |x, y| {
        if x < 32 && y < 24 {
            Rgb([230, 40, 40])
        } else if y > 48 {
            Rgb([30, 30, (x * 2) as u8])
        } else {
            Rgb([(x * 2) as u8, (y * 3) as u8, 120])
        }
    }))
}

#[test]
fn a_hostile_tree_is_embedded_skipped_and_trained_on_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let picture = upright();

    // oriented/: the same picture under every EXIF orientation, plus the upright original.
    write(
        &root.join("oriented/upright.png"),
        &encode(&picture, ImageFormat::Png),
    );
    for orientation in 1..=8u16 {
        let bytes = jpeg_with_orientation(&stored_for(&picture, orientation), orientation);
        write(
            &root.join(format!("oriented/exif-{orientation}.jpg")),
            &bytes,
        );
    }

    // formats/: odd but valid images, odd names.
    let formats = root.join("formats");
    write(
        &formats.join("one-pixel.png"),
        &encode(&picture.crop_imm(0, 0, 1, 1), ImageFormat::Png),
    );
    let strip = DynamicImage::ImageRgb8(RgbImage::from_fn(10_000, 10, |x, _| {
        Rgb([(x % 256) as u8, 90, 200])
    }));
    write(
        &formats.join("10000x10.png"),
        &encode(&strip, ImageFormat::Png),
    );
    write(
        &formats.join("sixteen-bit.png"),
        &encode(
            &DynamicImage::ImageRgb16(picture.to_rgb16()),
            ImageFormat::Png,
        ),
    );
    write(
        &formats.join("rgba.png"),
        &encode(
            &DynamicImage::ImageRgba8(picture.to_rgba8()),
            ImageFormat::Png,
        ),
    );
    write(
        &formats.join("palette.gif"),
        &encode(&picture, ImageFormat::Gif),
    );
    {
        let mut animated = Vec::new();
        {
            let mut encoder = image::codecs::gif::GifEncoder::new(&mut animated);
            for frame in [picture.to_rgba8(), picture.fliph().to_rgba8()] {
                encoder.encode_frame(image::Frame::new(frame)).unwrap();
            }
        }
        write(&formats.join("animated.gif"), &animated);
    }
    write(
        &formats.join("image.webp"),
        &encode(&picture, ImageFormat::WebP),
    );
    write(
        &formats.join("image.bmp"),
        &encode(&picture, ImageFormat::Bmp),
    );
    write(
        &formats.join("image.tiff"),
        &encode(&picture, ImageFormat::Tiff),
    );
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cmyk.jpg"),
        formats.join("cmyk.jpg"),
    )
    .unwrap();
    write(
        &formats.join("ünïcødé 猫.png"),
        &encode(&picture, ImageFormat::Png),
    );
    write(
        &formats.join("with space.png"),
        &encode(&picture, ImageFormat::Png),
    );

    // A photo-sized JPEG, decoded at reduced scale.
    let large = encode(&detailed(1600, 1200), ImageFormat::Jpeg);
    write(&formats.join("large.jpg"), &large);

    // formats/ also holds what cannot be embedded: every format cut short and damaged (where its decoder
    // can notice: in compressed data, or in the header of formats that store raw pixels), and the large JPEG
    // both ways, which takes the reduced-scale decoder.
    let broken = detailed(320, 240);
    for (format, extension) in BROKEN_FORMATS {
        let bytes = encode(&broken, format);
        let n = bytes.len();
        write(
            &formats.join(format!("truncated.{extension}")),
            &bytes[..n * 6 / 10],
        );
        let at = match format {
            ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif => n / 2,
            ImageFormat::Tiff => {
                u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize + 2
            }
            _ => 20,
        };
        write(
            &formats.join(format!("corrupt.{extension}")),
            &noise_over(&bytes, at, 64),
        );
    }
    write(
        &formats.join("truncated-large.jpg"),
        &large[..large.len() * 6 / 10],
    );
    write(
        &formats.join("corrupt-large.jpg"),
        &noise_over(&large, large.len() / 2, 256),
    );
    write(&formats.join("zero-bytes.png"), b"");
    write(&formats.join("notes.png"), b"this is text, not a PNG");
    write(
        &formats.join("huge-header.png"),
        &png_claiming(100_000, 100_000),
    );
    write(
        &formats.join(".hidden.png"),
        &encode(&picture, ImageFormat::Png),
    );
    let fifo = formats.join("pipe.png");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // Unreadable files: one without read permission (root reads it anyway), and one whose every read fails
    // whoever asks (the reading process's own memory at address 0).
    let locked = formats.join("locked.png");
    write(&locked, &encode(&picture, ImageFormat::Png));
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let locked_is_readable = std::fs::read(&locked).is_ok();
    std::os::unix::fs::symlink("/proc/self/mem", formats.join("unreadable.png")).unwrap();
    std::os::unix::fs::symlink(root.join("formats"), root.join("formats/loop")).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere.png"), root.join("formats/dangling.png"))
        .unwrap();

    // An empty class, and a stray file beside the class folders.
    std::fs::create_dir_all(root.join("empty")).unwrap();
    write(&root.join("README.md"), b"# about this data");

    let out = dir.path().join("hostile.npz");
    let (code, stdout, stderr, peak_mib) = headstart_peak_memory(&[
        "embed",
        root.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-cache",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // The 100000x100000 header alone would need 28 GiB decoded; the 10000x10 strip and the model need little.
    eprintln!("embed of the hostile tree: peak resident memory {peak_mib} MiB");
    assert!(
        peak_mib > 0 && peak_mib < 1024,
        "peak resident memory {peak_mib} MiB"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let skipped: Vec<(String, String)> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason = |path: &str| {
        skipped
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("{path} was not skipped: {skipped:?}"))
    };
    for (_, extension) in BROKEN_FORMATS {
        for (kind, reason_starts) in [("truncated", "truncated: "), ("corrupt", "corrupt data: ")] {
            let path = format!("formats/{kind}.{extension}");
            assert!(
                reason(&path).starts_with(reason_starts),
                "{path}: {}",
                reason(&path)
            );
        }
    }
    assert!(reason("formats/truncated-large.jpg").starts_with("truncated: "));
    assert!(reason("formats/corrupt-large.jpg").starts_with("corrupt data: "));
    for (path, expected) in [
        ("formats/zero-bytes.png", "not an image"),
        ("formats/notes.png", "not an image"),
        ("formats/huge-header.png", "over the limit"),
        ("formats/pipe.png", "not a regular file"),
        ("formats/dangling.png", "a broken link"),
        ("formats/loop", "symlink loop"),
        ("README.md", "not inside a class folder"),
        ("formats/unreadable.png", "cannot read"),
    ] {
        assert!(reason(path).contains(expected), "{path}: {skipped:?}");
    }
    assert_eq!(reason("formats/.hidden.png"), "hidden");
    if locked_is_readable {
        eprintln!("running with the rights to read a mode-000 file: locked.png is embedded");
    } else {
        assert!(
            reason("formats/locked.png").contains("ermission denied"),
            "{skipped:?}"
        );
    }
    // 9 other reasons and 14 broken images (+ locked.png where it cannot be read).
    let skip_count = if locked_is_readable { 23 } else { 24 };
    assert_eq!(skipped.len(), skip_count, "{skipped:?}");
    assert_eq!(summary["empty_classes"], serde_json::json!(["empty"]));
    // 9 oriented + 13 valid formats (+ locked.png where it can be read); reasons are one line each.
    let valid = if locked_is_readable { 23 } else { 22 };
    assert_eq!(summary["embedded"], valid, "{stdout}");
    assert!(
        skipped.iter().all(|(_, r)| !r.contains('\n')),
        "{skipped:?}"
    );

    // Every orientation comes out upright: the decoded pixels are the original's (up to JPEG's loss), and the
    // embeddings agree with the untransformed JPEG's.
    let expected = picture.to_rgb8();
    for orientation in 1..=8 {
        let bytes = std::fs::read(root.join(format!("oriented/exif-{orientation}.jpg"))).unwrap();
        let decoded = headstart::data::decode::decode_image(&bytes, &Default::default(), None)
            .unwrap()
            .to_rgb8();
        assert_eq!(decoded.dimensions(), (96, 64), "orientation {orientation}");
        let difference = decoded
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(&a, &b)| f64::from(a.abs_diff(b)))
            .sum::<f64>()
            / expected.as_raw().len() as f64;
        assert!(
            difference < 12.0,
            "orientation {orientation}: mean |difference| {difference}"
        );
    }
    let set = headstart::embeddings::EmbeddedSet::read_npz(&out).unwrap();
    let row = |path: &str| {
        let i = set
            .paths
            .iter()
            .position(|p| p == path)
            .unwrap_or_else(|| panic!("{path}"));
        set.embeddings[i * set.dim..(i + 1) * set.dim].to_vec()
    };
    let reference = row("oriented/exif-1.jpg");
    for orientation in 2..=8 {
        let similarity = headstart::embeddings::cosine(
            &reference,
            &row(&format!("oriented/exif-{orientation}.jpg")),
        );
        assert!(
            similarity > 0.95,
            "orientation {orientation}: cos {similarity}"
        );
    }
    for name in [
        "formats/ünïcødé 猫.png",
        "formats/with space.png",
        "formats/10000x10.png",
        "formats/one-pixel.png",
    ] {
        assert_eq!(row(name).len(), set.dim);
    }

    // train on the same tree: the empty class is reported, the rest trains.
    let bundle = dir.path().join("hostile.hs");
    let (code, stdout, stderr) = headstart(&[
        "train",
        root.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
        "--no-cache",
        "--grid",
        "1",
        "--folds",
        "3",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("empty class folder: empty"), "{stdout}");
    assert!(
        stdout.contains("class 'empty' has no examples and will never be predicted"),
        "{stdout}"
    );
    assert!(bundle.is_file());
}

/// A zip whose one `.npy` entry declares a float32 array of `rows` x 1280 zeros: deflated, the file is
/// about a thousandth of what it declares (as `np.savez_compressed` of zeros makes it).
fn deflated_zeros(entry: &str, rows: usize) -> Vec<u8> {
    use std::io::Write;
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, 1280), }}");
    dict.push_str(&" ".repeat((64 - (10 + dict.len() + 1) % 64) % 64));
    dict.push('\n');
    let mut bytes = Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut bytes);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(format!("{entry}.npy"), options).unwrap();
    zip.write_all(b"\x93NUMPY\x01\x00").unwrap();
    zip.write_all(&(dict.len() as u16).to_le_bytes()).unwrap();
    zip.write_all(dict.as_bytes()).unwrap();
    let zeros = vec![0u8; 1280 * 4 * 256];
    for _ in 0..rows / 256 {
        zip.write_all(&zeros).unwrap();
    }
    zip.finish().unwrap();
    bytes.into_inner()
}

/// An `.npz` and a bundle of half a megabyte that declare 512 MB of embeddings (or weights) are refused with
/// one clear line before anything is allocated for them: under a 256 MiB address-space limit, where reading
/// what they declare would abort, not print that line.
#[test]
fn files_declaring_far_more_than_they_hold_are_refused_with_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("huge.npz");
    std::fs::write(&npz, deflated_zeros("embeddings", 100_000)).unwrap();
    let bundle = dir.path().join("huge.hs");
    std::fs::write(&bundle, deflated_zeros("weights", 100_000)).unwrap();
    for file in [&npz, &bundle] {
        assert!(std::fs::metadata(file).unwrap().len() < 1 << 20);
    }
    let model = dir.path().join("model.hs");
    let runs = [
        (
            "train",
            vec![
                "train",
                npz.to_str().unwrap(),
                "-o",
                model.to_str().unwrap(),
            ],
        ),
        (
            "eval",
            vec!["eval", bundle.to_str().unwrap(), npz.to_str().unwrap()],
        ),
    ];
    for (what, args) in runs {
        let output = Command::new("sh")
            .args(["-c", "ulimit -v 262144 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_headstart"))
            .args(&args)
            .output()
            .unwrap();
        let (code, stderr) = (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        );
        assert_eq!(code, 1, "{what}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{what}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("declares"),
            "{what}: {stderr}"
        );
    }
    assert!(!model.exists());
}
