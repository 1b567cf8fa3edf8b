//! Self-contained HTML pages (no external files). `eval --report` (no scripts): the metrics, a confusion-matrix
//! heatmap, the misclassified images as thumbnails (or the misclassified texts) with true vs predicted class and
//! confidence, and a 2-D PCA scatter of the embeddings coloured by class. `audit --report`: see [`audit`].

pub mod audit;

pub use audit::{AuditPage, Shown, write_audit_report};

use std::io::Cursor;
use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::atomic::write_atomic;
use crate::data::decode::open_image_for;
use crate::error::{Error, Result};
use crate::metrics::{Metrics, argmax};
use crate::preprocess::{ImagePreprocess, Resize};

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
/// Mistakes shown at most, most confident first.
const MAX_MISTAKES_SHOWN: usize = 60;
/// Characters of a misclassified text shown; the rest is cut with an ellipsis.
const MAX_TEXT_CHARS: usize = 400;

pub struct ReportInput<'a> {
    pub title: String,
    pub metrics: &'a Metrics,
    pub class_names: &'a [String],
    pub embeddings: ArrayView2<'a, f32>,
    pub truth: &'a [usize],
    pub probabilities: ArrayView2<'a, f32>,
    /// Where each row came from (a relative path, or `file:line` for a text table).
    pub paths: &'a [String],
    pub samples: Samples<'a>,
}

/// What a misclassified row is shown as.
pub enum Samples<'a> {
    /// Image files, relative to the folder (if known): shown as thumbnails.
    Images(Option<PathBuf>),
    /// The texts themselves, one per row.
    Texts(&'a [String]),
}

pub fn write_report(path: &Path, input: &ReportInput) -> Result<()> {
    let html = render(input);
    write_atomic(path, |out| {
        out.write_all(html.as_bytes())
            .map_err(|e| Error::io(path, e))
    })
}

fn render(r: &ReportInput) -> String {
    let m = r.metrics;
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>\
         body{{font-family:sans-serif;margin:24px;color:#222}} table{{border-collapse:collapse}} \
         td,th{{padding:4px 8px;text-align:right;border:1px solid #ddd}} th{{background:#f4f4f4}} \
         .thumbs{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0;width:140px;font-size:12px}} \
         figure img{{width:128px;height:128px;object-fit:cover;border:2px solid #d62728}} \
         figure.text{{width:300px}} figure blockquote{{margin:0 0 4px;padding:6px;border-left:3px solid #d62728;\
         background:#fafafa;font-size:13px;white-space:pre-wrap;overflow-wrap:anywhere}}</style></head><body>\
         <h1>{title}</h1><p>accuracy <b>{:.4}</b> · macro-F1 <b>{:.4}</b> · log loss {:.4} · ECE {:.4} · {} samples</p>",
        m.accuracy,
        m.macro_f1,
        m.log_loss,
        m.ece,
        m.samples,
        title = escape(&r.title)
    );
    html += "<h2>Per class</h2><table id=\"per-class\"><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>";
    for c in &m.per_class {
        html += &format!(
            "<tr><td style=\"text-align:left\">{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            escape(&c.name),
            c.precision,
            c.recall,
            c.f1,
            c.support
        );
    }
    html += "</table>";
    html += &confusion_heatmap(m, r.class_names);
    html += &scatter(r);
    html += &misclassified(r);
    html += "</body></html>\n";
    html
}

fn confusion_heatmap(m: &Metrics, names: &[String]) -> String {
    let mut html = String::from(
        "<h2>Confusion matrix</h2><p>rows: true class, columns: predicted</p><table id=\"confusion\"><tr><th></th>",
    );
    for name in names {
        html += &format!("<th>{}</th>", escape(name));
    }
    html += "</tr>";
    for (t, row) in m.confusion.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        html += &format!("<tr><th>{}</th>", escape(&names[t]));
        for (p, &count) in row.iter().enumerate() {
            let share = count as f64 / total;
            // Blue for the diagonal, red elsewhere, darker for a larger share of the true class.
            let (hue, light) = (if p == t { 210 } else { 0 }, 100.0 - 55.0 * share);
            html += &format!("<td style=\"background:hsl({hue},70%,{light:.0}%)\">{count}</td>");
        }
        html += "</tr>";
    }
    html + "</table>"
}

/// The first two principal components by power iteration on the centred embeddings.
fn pca_2d(x: ArrayView2<f32>) -> Array2<f32> {
    let mean = x
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(x.ncols()));
    let centred = &x - &mean;
    let mut components: Vec<Array1<f32>> = Vec::new();
    for c in 0..2 {
        let mut v = Array1::from_shape_fn(x.ncols(), |i| {
            ((i * 7919 + c * 104_729) % 1000) as f32 / 1000.0 - 0.5
        });
        for _ in 0..100 {
            let mut next = centred.t().dot(&centred.dot(&v));
            for u in &components {
                let along = next.dot(u);
                next = next - u * along;
            }
            let norm = next.dot(&next).sqrt();
            if norm < 1e-12 {
                break;
            }
            v = next / norm;
        }
        components.push(v);
    }
    let mut out = Array2::zeros((x.nrows(), 2));
    for (c, v) in components.iter().enumerate() {
        out.column_mut(c).assign(&centred.dot(v));
    }
    out
}

fn scatter(r: &ReportInput) -> String {
    if r.embeddings.nrows() < 2 {
        return String::new();
    }
    let points = pca_2d(r.embeddings);
    let (w, h, pad) = (640.0f32, 480.0f32, 20.0f32);
    let range = |c: usize| {
        let col = points.column(c);
        let (lo, hi) = col
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        (lo, (hi - lo).max(1e-6))
    };
    let ((x0, xs), (y0, ys)) = (range(0), range(1));
    let mut svg = format!(
        "<h2>Embeddings (PCA, 2-D)</h2><svg id=\"scatter\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" style=\"border:1px solid #ddd\">"
    );
    for (row, &t) in points.rows().into_iter().zip(r.truth) {
        let cx = pad + (row[0] - x0) / xs * (w - 2.0 * pad);
        let cy = h - pad - (row[1] - y0) / ys * (h - 2.0 * pad);
        svg += &format!(
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"3\" fill=\"{}\" fill-opacity=\"0.6\"/>",
            PALETTE[t % PALETTE.len()]
        );
    }
    svg += "</svg><p>";
    for (c, name) in r.class_names.iter().enumerate() {
        svg += &format!(
            "<span style=\"color:{}\">●</span> {} &nbsp; ",
            PALETTE[c % PALETTE.len()],
            escape(name)
        );
    }
    svg + "</p>"
}

fn misclassified(r: &ReportInput) -> String {
    let mut mistakes: Vec<(usize, usize, f32)> = r
        .probabilities
        .rows()
        .into_iter()
        .enumerate()
        .filter_map(|(i, row)| {
            let predicted = argmax(row.as_slice().unwrap_or(&[]));
            (predicted != r.truth[i]).then_some((i, predicted, row[predicted]))
        })
        .collect();
    mistakes.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut html = format!(
        "<h2>Misclassified ({})</h2><div class=\"thumbs\" id=\"misclassified\">",
        mistakes.len()
    );
    for &(i, predicted, confidence) in mistakes.iter().take(MAX_MISTAKES_SHOWN) {
        let (class, sample) = match &r.samples {
            Samples::Texts(texts) => ("text", excerpt(texts.get(i).map_or("", String::as_str))),
            Samples::Images(root) => {
                let image = root
                    .as_ref()
                    .map(|root| root.join(&r.paths[i]))
                    .and_then(|p| thumbnail(&p));
                let picture = image.map_or(
                    "<div style=\"width:128px;height:128px;background:#eee\"></div>".to_string(),
                    |data| format!("<img src=\"data:image/jpeg;base64,{data}\" alt=\"\">"),
                );
                ("image", picture)
            }
        };
        html += &format!(
            "<figure class=\"{class}\">{sample}<figcaption>{}<br>true <b>{}</b><br>predicted <b>{}</b> {:.0}%</figcaption></figure>",
            escape(&r.paths[i]),
            escape(&r.class_names[r.truth[i]]),
            escape(&r.class_names[predicted]),
            confidence * 100.0
        );
    }
    html + "</div>"
}

/// The text as a quotation, cut after `MAX_TEXT_CHARS` characters.
fn excerpt(text: &str) -> String {
    format!(
        "<blockquote>{}</blockquote>",
        escape(&cut(text, MAX_TEXT_CHARS))
    )
}

/// The first `chars` characters of `text`, and an ellipsis if there were more.
fn cut(text: &str, chars: usize) -> String {
    let mut shown: String = text.chars().take(chars).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// A 128-pixel JPEG thumbnail, base64-encoded; `None` if the file cannot be read.
fn thumbnail(path: &Path) -> Option<String> {
    thumbnail_jpeg(path).map(|jpeg| base64(&jpeg))
}

/// A 128-pixel JPEG thumbnail of an image file; `None` if the file cannot be read. A large JPEG is decoded at
/// reduced scale: a thumbnail needs little of a photo's pixels.
pub fn thumbnail_jpeg(path: &Path) -> Option<Vec<u8>> {
    let thumbnail_size = ImagePreprocess {
        height: 128,
        width: 128,
        resize: Resize::Stretch,
        ..Default::default()
    };
    let image = open_image_for(path, Some(&thumbnail_size))
        .ok()?
        .thumbnail(128, 128);
    let mut jpeg = Cursor::new(Vec::new());
    image
        .to_rgb8()
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .ok()?;
    Some(jpeg.into_inner())
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= chunk.len() {
                TABLE[(n >> shift & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_photo_thumbnail_is_128_pixels_and_an_unreadable_file_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("photo.jpg");
        image::RgbImage::from_fn(2400, 1800, |x, y| {
            image::Rgb([(x / 10) as u8, (y / 8) as u8, 90])
        })
        .save(&photo)
        .unwrap();
        let encoded = thumbnail(&photo).unwrap();
        // Back from base64 by the standard alphabet.
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bits: Vec<u8> = encoded
            .bytes()
            .filter(|&b| b != b'=')
            .map(|b| table.iter().position(|&t| t == b).unwrap() as u8)
            .collect();
        let bytes: Vec<u8> = bits
            .chunks(4)
            .flat_map(|c| {
                let n = c.iter().fold(0u32, |n, &v| n << 6 | v as u32) << (6 * (4 - c.len()));
                [(n >> 16) as u8, (n >> 8) as u8, n as u8][..c.len() - 1].to_vec()
            })
            .collect();
        let small = image::load_from_memory(&bytes).unwrap();
        assert_eq!((small.width(), small.height()), (128, 96));
        assert_eq!(thumbnail(&dir.path().join("missing.jpg")), None);
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn pca_finds_the_spread() {
        let x = array![
            [0.0f32, 0.0, 1.0],
            [10.0, 0.0, 1.0],
            [20.0, 0.1, 1.0],
            [30.0, -0.1, 1.0]
        ];
        let p = pca_2d(x.view());
        let spread = |c: usize| p.column(c).iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(spread(0) > 10.0 && spread(1) < 1.0, "{p:?}");
    }

    /// A page for three rows with truth [0, 1, 1], classes `names` and the given probabilities.
    fn page(
        names: [&str; 2],
        probabilities: ndarray::Array2<f32>,
        paths: [&str; 3],
        samples: Samples,
    ) -> String {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let truth = [0, 1, 1];
        let metrics = crate::metrics::evaluate(&truth, probabilities.view(), &names);
        let embeddings = array![[1.0f32, 0.0], [0.0, 1.0], [0.5, 0.5]];
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        render(&ReportInput {
            title: "test".into(),
            metrics: &metrics,
            class_names: &names,
            embeddings: embeddings.view(),
            truth: &truth,
            probabilities: probabilities.view(),
            paths: &paths,
            samples,
        })
    }

    #[test]
    fn page_has_every_part_and_escapes_names() {
        let html = page(
            ["<cat>", "dog"],
            array![[0.9f32, 0.1], [0.8, 0.2], [0.3, 0.7]],
            ["a.png", "b.png", "c.png"],
            Samples::Images(None),
        );
        for part in [
            "id=\"confusion\"",
            "id=\"scatter\"",
            "id=\"misclassified\"",
            "Misclassified (1)",
            "b.png",
            "&lt;cat&gt;",
        ] {
            assert!(html.contains(part), "missing {part}");
        }
        assert!(!html.contains("<cat>"));
    }

    #[test]
    fn misclassified_texts_are_quoted_escaped_and_cut() {
        let long = "é".repeat(MAX_TEXT_CHARS + 50);
        let texts = vec![
            "Not <b>bad</b> at all".to_string(),
            long.clone(),
            "fine".to_string(),
        ];
        let html = page(
            ["negative", "positive"],
            array![[0.2f32, 0.8], [0.9, 0.1], [0.4, 0.6]],
            ["reviews.csv:2", "reviews.csv:3", "reviews.csv:4"],
            Samples::Texts(&texts),
        );
        assert!(html.contains("Misclassified (2)"));
        assert!(html.contains("<blockquote>Not &lt;b&gt;bad&lt;/b&gt; at all</blockquote>"));
        let cut = format!("<blockquote>{}…</blockquote>", "é".repeat(MAX_TEXT_CHARS));
        assert!(html.contains(&cut));
        assert!(!html.contains(&long));
        assert!(
            !html.contains("fine</blockquote>"),
            "a correct row is not a mistake"
        );
        assert!(!html.contains("<img"));
    }
}
