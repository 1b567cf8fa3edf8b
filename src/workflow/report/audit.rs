//! `audit --report`: one self-contained HTML page of what an audit found: each input whose label is in doubt
//! (thumbnail or quoted text) beside typical inputs of its given and its suggested class, duplicate groups side by
//! side, validation inputs beside their training copies, outliers; buttons show one kind at a time.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::atomic::write_atomic;
use crate::audit::Audit;
use crate::data::Data;
use crate::error::{Error, Result};

use super::{cut, escape, excerpt, thumbnail};

/// Items shown at most per kind of problem (the JSON lists them all).
const MAX_SHOWN: usize = 200;

pub struct AuditPage<'a> {
    pub title: String,
    pub audit: &'a Audit,
    pub train: Shown<'a>,
    pub validation: Option<Shown<'a>>,
}

/// How the inputs of a dataset are shown.
pub enum Shown<'a> {
    /// Image files, relative to this folder: thumbnails.
    Images(&'a Path),
    /// Texts, by the id an audit names them with.
    Texts(HashMap<&'a str, &'a str>),
    /// Embeddings read from a file: their names only.
    Names,
}

impl<'a> Shown<'a> {
    pub fn of(data: &'a Data) -> Shown<'a> {
        match data {
            Data::Images(files) => Shown::Images(&files.root),
            Data::Texts(texts) => Shown::Texts(
                texts
                    .items
                    .iter()
                    .map(|item| (item.id.as_str(), item.text.as_str()))
                    .collect(),
            ),
            Data::Embeddings(_) => Shown::Names,
        }
    }
}

pub fn write_audit_report(path: &Path, page: &AuditPage) -> Result<()> {
    let html = render(page);
    write_atomic(path, |out| {
        out.write_all(html.as_bytes())
            .map_err(|e| Error::io(path, e))
    })
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222} table{border-collapse:collapse} \
td,th{padding:4px 8px;text-align:right;border:1px solid #ddd} th{background:#f4f4f4} \
nav{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #ddd} \
nav button{font-size:14px;margin-right:6px;padding:4px 10px;border:1px solid #999;background:#f4f4f4;border-radius:4px;cursor:pointer} \
nav button.on{background:#1f77b4;color:#fff;border-color:#1f77b4} \
.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start;padding:10px 0;border-bottom:1px solid #eee} \
figure{margin:0;width:136px;font-size:12px;overflow-wrap:anywhere} figure img,.shot{width:128px;height:128px;object-fit:cover;border:2px solid #d62728;display:block} \
figure.text{width:300px} blockquote{margin:0 0 4px;padding:6px;border-left:3px solid #d62728;background:#fafafa;font-size:13px;white-space:pre-wrap;overflow-wrap:anywhere} \
.examples{display:flex;flex-direction:column;gap:2px;font-size:12px;color:#555} .examples div{display:flex;gap:4px;flex-wrap:wrap} \
.ex{width:56px;height:56px;background-size:cover;border:1px solid #ccc} .ex.text{width:220px;height:auto;font-size:11px;padding:2px;background:#fafafa} \
.bar{background:#1f77b4;height:10px;display:inline-block} .score{font-weight:bold} .missing{width:128px;height:128px;background:#eee}";

const SCRIPT: &str = "document.querySelectorAll('nav button').forEach(function(b){b.onclick=function(){\
var k=b.dataset.kind;document.querySelectorAll('section[data-kind]').forEach(function(s){\
s.hidden=k!=='all'&&s.dataset.kind!==k});document.querySelectorAll('nav button').forEach(function(x){\
x.classList.toggle('on',x===b)})}})";

fn render(page: &AuditPage) -> String {
    let audit = page.audit;
    let summary = &audit.summary;
    let mut drawn = Drawn::new(&page.train);
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title}</h1><p id=\"summary\">{} inputs · <b>{}</b> label issues (estimated label noise {:.1} %) · \
         <b>{}</b> duplicate groups ({} across classes) · <b>{}</b> validation inputs in the training data · \
         <b>{}</b> outliers</p><p>cross-validated accuracy <b>{:.4}</b>; <b>{:.4}</b> on the inputs nothing was flagged on</p>",
        summary.rows,
        summary.label_issues,
        summary.noise_rate * 100.0,
        summary.duplicate_groups,
        summary.conflicting_groups,
        summary.leaked,
        summary.outliers,
        summary.cv_accuracy,
        summary.cv_accuracy_unflagged,
        title = escape(&page.title)
    );
    let largest = summary.classes.values().copied().max().unwrap_or(1).max(1);
    html += "<table id=\"classes\"><tr><th>class</th><th>inputs</th><th></th></tr>";
    for (name, count) in &summary.classes {
        let _ = write!(
            html,
            "<tr><td style=\"text-align:left\">{}</td><td>{count}</td><td style=\"text-align:left;width:240px\">\
             <span class=\"bar\" style=\"width:{}px\"></span></td></tr>",
            escape(name),
            count * 240 / largest
        );
    }
    html += "</table><nav><button class=\"on\" data-kind=\"all\">everything</button>";
    for (kind, label, count) in [
        ("label-issues", "label issues", audit.label_issues.len()),
        ("duplicates", "duplicates", audit.duplicates.len()),
        ("leakage", "leakage", audit.leakage.len()),
        ("outliers", "outliers", audit.outliers.len()),
    ] {
        let _ = write!(
            html,
            "<button data-kind=\"{kind}\">{label} ({count})</button>"
        );
    }
    html += "</nav>";

    html += &section("label-issues", "Label issues", audit.label_issues.len());
    for issue in audit.label_issues.iter().take(MAX_SHOWN) {
        let _ = write!(
            html,
            "<div class=\"row item\" data-path=\"{}\">{}{}{}</div>",
            escape(&issue.path),
            drawn.figure(
                &issue.path,
                &format!(
                    "given <b>{}</b><br>looks like <b>{}</b><br><span class=\"score\">{:.3}</span>",
                    escape(&issue.given),
                    escape(&issue.suggested),
                    issue.score
                )
            ),
            drawn.examples(audit, &issue.given, "given"),
            drawn.examples(audit, &issue.suggested, "suggested"),
        );
    }
    html += &more(audit.label_issues.len());

    html += &section("duplicates", "Duplicates", audit.duplicates.len());
    for group in audit.duplicates.iter().take(MAX_SHOWN) {
        let kind = if group.exact {
            "exact copies"
        } else {
            "near copies"
        };
        let conflict = if group.conflicting {
            " · <b style=\"color:#d62728\">across classes</b>"
        } else {
            ""
        };
        let members: String = group
            .paths
            .iter()
            .zip(&group.classes)
            .map(|(path, class)| drawn.figure(path, &format!("<b>{}</b>", escape(class))))
            .collect();
        let _ = write!(
            html,
            "<div class=\"item\" data-path=\"{}\"><p>{kind}, similarity {:.4}{conflict}</p><div class=\"row\">{members}</div></div>",
            escape(&group.paths.join(" ")),
            group.similarity
        );
    }
    html += &more(audit.duplicates.len());

    html += &section(
        "leakage",
        "Validation inputs in the training data",
        audit.leakage.len(),
    );
    let mut validation = page.validation.as_ref().map(Drawn::new);
    for leak in audit.leakage.iter().take(MAX_SHOWN) {
        let how = if leak.exact {
            "exact copy"
        } else {
            "near copy"
        };
        let shown = match validation.as_mut() {
            Some(drawn) => drawn.figure(&leak.validation, "validation"),
            None => figure_caption(&leak.validation, "validation"),
        };
        let _ = write!(
            html,
            "<div class=\"row item\" data-path=\"{}\">{shown}{}<p>{how}, similarity {:.4}</p></div>",
            escape(&leak.validation),
            drawn.figure(
                &leak.train,
                &format!("training, <b>{}</b>", escape(&leak.class))
            ),
            leak.similarity
        );
    }
    html += &more(audit.leakage.len());

    html += &section("outliers", "Outliers", audit.outliers.len());
    html += "<div class=\"row\">";
    for outlier in audit.outliers.iter().take(MAX_SHOWN) {
        let _ = write!(
            html,
            "<div class=\"item\" data-path=\"{}\">{}</div>",
            escape(&outlier.path),
            drawn.figure(
                &outlier.path,
                &format!(
                    "<b>{}</b><br><span class=\"score\">{:.3}</span>",
                    escape(&outlier.class),
                    outlier.score
                )
            )
        );
    }
    html += "</div>";
    html += &more(audit.outliers.len());
    // Thumbnails of typical inputs are styles, each drawn once however often it is shown.
    html += &format!(
        "</section><style>{}</style><script>{SCRIPT}</script></body></html>",
        drawn.example_styles
    );
    html
}

fn section(kind: &str, title: &str, count: usize) -> String {
    let close = if kind == "label-issues" {
        ""
    } else {
        "</section>"
    };
    format!("{close}<section data-kind=\"{kind}\" id=\"{kind}\"><h2>{title} ({count})</h2>")
}

fn more(total: usize) -> String {
    if total > MAX_SHOWN {
        format!(
            "<p>… and {} more (<code>--json</code> lists them all)</p>",
            total - MAX_SHOWN
        )
    } else {
        String::new()
    }
}

fn figure_caption(path: &str, caption: &str) -> String {
    format!(
        "<figure><div class=\"missing\"></div><figcaption>{}<br>{caption}</figcaption></figure>",
        escape(path)
    )
}

/// Draws the inputs of one dataset.
struct Drawn<'s, 'a> {
    shown: &'s Shown<'a>,
    /// Input → the class of its style, for typical inputs drawn as styles.
    example_class: HashMap<String, String>,
    example_styles: String,
}

impl<'s, 'a> Drawn<'s, 'a> {
    fn new(shown: &'s Shown<'a>) -> Self {
        Drawn {
            shown,
            example_class: HashMap::new(),
            example_styles: String::new(),
        }
    }

    /// The input as a thumbnail or a quotation, with its name and `caption` (HTML) under it.
    fn figure(&self, path: &str, caption: &str) -> String {
        let (class, body) = match self.shown {
            Shown::Images(root) => (
                "image",
                thumbnail(&root.join(path))
                    .map_or("<div class=\"missing\"></div>".to_string(), |data| {
                        format!("<img src=\"data:image/jpeg;base64,{data}\" alt=\"\">")
                    }),
            ),
            Shown::Texts(texts) => ("text", excerpt(texts.get(path).copied().unwrap_or(""))),
            Shown::Names => ("image", "<div class=\"missing\"></div>".to_string()),
        };
        format!(
            "<figure class=\"{class}\">{body}<figcaption>{}<br>{caption}</figcaption></figure>",
            escape(path)
        )
    }

    /// Typical inputs of `class`, small, under a label.
    fn examples(&mut self, audit: &Audit, class: &str, label: &str) -> String {
        let paths = audit.examples.get(class).map_or(&[][..], Vec::as_slice);
        let drawn: String = paths.iter().map(|path| self.example(path)).collect();
        format!(
            "<div class=\"examples\">{label}: {}<div>{drawn}</div></div>",
            escape(class)
        )
    }

    fn example(&mut self, path: &str) -> String {
        match self.shown {
            Shown::Texts(texts) => {
                let text = texts.get(path).copied().unwrap_or("");
                format!(
                    "<div class=\"ex text\" title=\"{0}\">{0}</div>",
                    escape(&cut(text, 120))
                )
            }
            Shown::Names => format!("<div class=\"ex\" title=\"{0}\"></div>", escape(path)),
            Shown::Images(root) => {
                let next = self.example_class.len();
                let class = match self.example_class.get(path) {
                    Some(class) => class.clone(),
                    None => {
                        let class = format!("ex{next}");
                        if let Some(data) = thumbnail(&root.join(path)) {
                            let _ = write!(
                                self.example_styles,
                                ".{class}{{background-image:url(data:image/jpeg;base64,{data})}}"
                            );
                        }
                        self.example_class.insert(path.to_string(), class.clone());
                        class
                    }
                };
                format!(
                    "<div class=\"ex {class}\" title=\"{}\"></div>",
                    escape(path)
                )
            }
        }
    }
}
