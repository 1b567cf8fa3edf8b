//! The studio's page and API. Work on files and the model runs on blocking threads; errors are JSON
//! `{"error": "..."}` with a 4xx status for what the page sent.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use headstart::backbone::CalibrationSettings;
use headstart::backbone::{BackboneOptions, BackboneRef};
use headstart::classifier::{Input, ServiceOptions};
use headstart::data::Data;
use headstart::data::DatasetFolder;
use headstart::embeddings::EmbedOptions;
use headstart::export::{self, ExportOptions};
use headstart::head::{HeadKind, NoveltyParams, TrainParams};
use headstart::workflow::{self, report::thumbnail_jpeg};
use headstart::workflow::{SearchEvent, SearchSettings};
use headstart::zoo;
use headstart::{PredictOptions, classifier::Service};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{COOKIE, Dataset, Model, Progress, Setting, Studio, Thumbnail};
use crate::cli::http::routes::answered;
use crate::cli::http::{Failure, bad_request};
use crate::cli::print::answer_json;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("studio.js");
const STYLE: &str = include_str!("studio.css");

/// The page; it sets the cookie that carries the token on every later request.
pub async fn page(State(studio): State<Arc<Studio>>) -> Response {
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        studio.token
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        PAGE,
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> headstart::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(Failure::from)
}

/// The classes and their images (paths relative to the folder) and images outside any class; or, for a text
/// table, the classes and their rows.
pub async fn data(State(studio): State<Arc<Studio>>) -> Result<Json<Value>, Failure> {
    let shared = studio.clone();
    blocking(move || match &shared.dataset {
        Dataset::Images(folder) => {
            let files = folder.list()?;
            let mut images: Vec<Vec<String>> = vec![Vec::new(); files.classes.len()];
            let mut unfiled = Vec::new();
            for item in files.items {
                match item.label {
                    Some(label) => images[label].push(item.relative),
                    None => unfiled.push(item.relative),
                }
            }
            let classes: Vec<Value> = files
                .classes
                .iter()
                .zip(images)
                .map(|(name, images)| json!({"name": name, "images": images}))
                .collect();
            Ok(json!({
                "kind": "images",
                "folder": folder.root().display().to_string(),
                "classes": classes,
                "unfiled": unfiled,
            }))
        }
        Dataset::Texts(table) => Ok(rows_json(table.path(), &table.read()?)),
        Dataset::TextFolder(folder) => match shared.dataset.data()? {
            Data::Texts(texts) => Ok(rows_json(folder.root(), &texts)),
            _ => Err(headstart::Error::input(
                folder.root(),
                "no longer holds only .txt files: restart the studio on it",
            )),
        },
    })
    .await
    .map(|mut data| {
        data["backbones"] = json!(studio.backbones());
        Json(data)
    })
}

/// A text dataset's classes and their rows (id and text), and the rows skipped.
fn rows_json(source: &std::path::Path, texts: &headstart::data::TextDataset) -> Value {
    let mut rows: Vec<Vec<Value>> = vec![Vec::new(); texts.classes.len()];
    for item in &texts.items {
        if let Some(label) = item.label {
            rows[label].push(json!({"id": item.id, "text": item.text}));
        }
    }
    let classes: Vec<Value> = texts
        .classes
        .iter()
        .zip(rows)
        .map(|(name, rows)| json!({"name": name, "rows": rows}))
        .collect();
    json!({
        "kind": "texts",
        "folder": source.display().to_string(),
        "classes": classes,
        "skipped": texts
            .skipped
            .iter()
            .map(|skip| json!({"id": skip.path, "reason": skip.reason}))
            .collect::<Vec<_>>(),
    })
}

/// A 128-pixel JPEG of an image in the folder, made once per version of the file.
pub async fn thumbnail(
    State(studio): State<Arc<Studio>>,
    Path(relative): Path<String>,
) -> Result<Response, Failure> {
    let shared = studio.clone();
    let jpeg = blocking(move || {
        let path = shared.folder()?.existing_file(&relative)?;
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(|e| headstart::Error::io(&path, e))?;
        if let Some(made) = shared.cached_thumbnail(&relative)
            && made.made_from == modified
        {
            return Ok(made.jpeg);
        }
        let jpeg = Arc::new(
            thumbnail_jpeg(&path)
                .ok_or_else(|| headstart::Error::input(&relative, "cannot be read as an image"))?,
        );
        shared.keep_thumbnail(relative, modified, jpeg.clone());
        Ok(jpeg)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, no-cache"),
        ],
        jpeg.as_ref().clone(),
    )
        .into_response())
}

/// An image of the folder as it is on disk.
pub async fn image(
    State(studio): State<Arc<Studio>>,
    Path(relative): Path<String>,
) -> Result<Response, Failure> {
    let shared = studio.clone();
    let bytes = blocking(move || {
        let path = shared.folder()?.existing_file(&relative)?;
        std::fs::read(&path).map_err(|e| headstart::Error::io(&path, e))
    })
    .await?;
    let kind = image::guess_format(&bytes).map_or("application/octet-stream", |f| f.to_mime_type());
    Ok(([(header::CONTENT_TYPE, kind)], bytes).into_response())
}

#[derive(Deserialize)]
pub struct NewClass {
    name: String,
}

pub async fn add_class(
    State(studio): State<Arc<Studio>>,
    Json(body): Json<NewClass>,
) -> Result<Json<Value>, Failure> {
    blocking(move || studio.folder()?.add_class(&body.name)).await?;
    Ok(Json(json!({"added": true})))
}

/// Images uploaded into a class, one per multipart part; a part that is not an image is refused on its own.
pub async fn add_images(
    State(studio): State<Arc<Studio>>,
    Path(class): Path<String>,
    mut multipart: Multipart,
) -> Result<Json<Value>, Failure> {
    let mut added = Vec::new();
    let mut refused = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad_request(e.body_text()))?
    {
        // Browsers send a bare name; anything before a separator is dropped, never followed.
        let name = field
            .file_name()
            .unwrap_or("upload")
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or("upload")
            .to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| bad_request(e.body_text()))?;
        let shared = studio.clone();
        let class = class.clone();
        let shown = name.clone();
        match blocking(move || shared.folder()?.add_image(&class, &name, &bytes)).await {
            Ok(path) => added.push(path),
            Err(Failure(_, reason)) => refused.push(json!({"name": shown, "error": reason})),
        }
    }
    Ok(Json(json!({"added": added, "refused": refused})))
}

#[derive(Deserialize)]
pub struct NewRows {
    label: String,
    texts: Vec<String>,
}

/// Rows added to a text table, all with one label (a new label makes a new class).
pub async fn add_texts(
    State(studio): State<Arc<Studio>>,
    Json(body): Json<NewRows>,
) -> Result<Json<Value>, Failure> {
    let added = blocking(move || match &studio.dataset {
        Dataset::Texts(table) => table.add_rows(&body.label, &body.texts),
        Dataset::TextFolder(folder) => {
            for text in &body.texts {
                folder.add_text(&body.label, text)?;
            }
            Ok(body.texts.len())
        }
        Dataset::Images(folder) => Err(headstart::Error::input(
            folder.root(),
            "is an image folder: add images to it, not texts",
        )),
    })
    .await?;
    Ok(Json(json!({ "added": added })))
}

/// An image, or a text table's row, by its path or id; a row also by the text the page showed, so that an edit
/// never lands on another row when the table changed.
#[derive(Deserialize)]
pub struct Named {
    path: String,
    text: Option<String>,
}

impl Named {
    fn text(&self) -> Result<&str, headstart::Error> {
        self.text
            .as_deref()
            .ok_or_else(|| headstart::Error::input(&self.path, "a row is named with its text"))
    }
}

#[derive(Deserialize)]
pub struct Move {
    #[serde(flatten)]
    named: Named,
    class: String,
}

/// An image moved to another class folder, or a row relabelled.
pub async fn move_image(
    State(studio): State<Arc<Studio>>,
    Json(body): Json<Move>,
) -> Result<Json<Value>, Failure> {
    let path = blocking(move || match &studio.dataset {
        Dataset::Images(folder) | Dataset::TextFolder(folder) => {
            folder.move_to(&body.named.path, &body.class)
        }
        Dataset::Texts(table) => table
            .relabel(&body.named.path, body.named.text()?, &body.class)
            .map(|()| body.named.path.clone()),
    })
    .await?;
    Ok(Json(json!({ "path": path })))
}

/// An image or a row put in the trash; answers what names it there.
pub async fn trash(
    State(studio): State<Arc<Studio>>,
    Json(body): Json<Named>,
) -> Result<Json<Value>, Failure> {
    let trashed = blocking(move || match &studio.dataset {
        Dataset::Images(folder) | Dataset::TextFolder(folder) => folder.trash(&body.path),
        Dataset::Texts(table) => table.trash(&body.path, body.text()?),
    })
    .await?;
    Ok(Json(json!({ "trashed": trashed })))
}

pub async fn restore(
    State(studio): State<Arc<Studio>>,
    Json(body): Json<Named>,
) -> Result<Json<Value>, Failure> {
    let path = blocking(move || match &studio.dataset {
        Dataset::Images(folder) | Dataset::TextFolder(folder) => folder.restore(&body.path),
        Dataset::Texts(table) => table.restore(&body.path),
    })
    .await?;
    Ok(Json(json!({ "path": path })))
}

/// The settings the page's training form sends; what is left out is `headstart train`'s default.
#[derive(Deserialize, Default)]
pub struct TrainForm {
    /// A zoo backbone of the dataset's kind, or the one the studio was started with.
    backbone: Option<String>,
    /// `given` (the backbone's output) or `auto` (chosen by cross-validation among its late layers too).
    features: Option<String>,
    head: Option<String>,
    folds: Option<usize>,
    seed: Option<u64>,
    class_weight: Option<String>,
    /// Neighbours of the knn head.
    k: Option<usize>,
    /// Answer `unknown` for inputs unlike the training data, rejecting this fraction of known ones.
    open_set: Option<f64>,
    /// Search the regularisation strength again; otherwise a retraining with the same head keeps the one chosen
    /// last (five fits instead of twenty-five: a fix is retrained in about a second on ELPV).
    #[serde(default)]
    search: bool,
}

/// Trains on the folder as it is now (embeddings come from the cache where the files are unchanged), keeps the
/// bundle for "try it" and answers with the out-of-fold metrics and every input's out-of-fold answer.
pub async fn train(
    State(studio): State<Arc<Studio>>,
    body: Option<Json<TrainForm>>,
) -> Result<Json<Value>, Failure> {
    let Ok(_one_at_a_time) = studio.training.try_lock() else {
        return Err(Failure(
            StatusCode::CONFLICT,
            "a training is running already".into(),
        ));
    };
    let form = body.map(|Json(form)| form).unwrap_or_default();
    let shared = studio.clone();
    let report = blocking(move || shared.train(&form)).await;
    studio.set_progress("", 0, 0);
    Ok(Json(report?))
}

/// The progress of the training or audit running now, as server-sent events: the state now, then each change,
/// until it is idle again after one (a page opens the stream as it starts one; a stream that outlived its work
/// would hold the server open on Ctrl-C).
pub async fn progress(
    State(studio): State<Arc<Studio>>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let receiver = studio.progress.subscribe();
    let events = futures_util::stream::unfold(
        (receiver, Some(false)),
        |(mut receiver, changed)| async move {
            let changed = changed?;
            if changed && receiver.changed().await.is_err() {
                return None;
            }
            let progress = receiver.borrow_and_update().clone();
            let idle_again = changed && progress.stage.is_empty();
            let event = Event::default().data(serde_json::to_string(&progress).unwrap_or_default());
            Some((Ok(event), (receiver, (!idle_again).then_some(true))))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// What the last training answered, or `{"trained": false}`.
pub async fn model(State(studio): State<Arc<Studio>>) -> Json<Value> {
    let model = studio.model.read().unwrap_or_else(|e| e.into_inner());
    Json(match model.as_ref() {
        Some(model) => model.report.clone(),
        None => json!({"trained": false}),
    })
}

/// The trained bundle's answer for one image or text (the request's body), every class ranked.
pub async fn predict(
    State(studio): State<Arc<Studio>>,
    body: Bytes,
) -> Result<Json<Value>, Failure> {
    let (service, classes) = {
        let model = studio.model.read().unwrap_or_else(|e| e.into_inner());
        let model = model
            .as_ref()
            .ok_or_else(|| bad_request("train first: there is no model yet"))?;
        let classes = model.report["class_names"].as_array().map_or(1, Vec::len);
        (model.service.clone(), classes)
    };
    let input = match &studio.dataset {
        Dataset::Images(_) => Input::Image(body.to_vec()),
        Dataset::Texts(_) | Dataset::TextFolder(_) => Input::Text(
            String::from_utf8(body.to_vec()).map_err(|_| bad_request("the text is not UTF-8"))?,
        ),
    };
    let started = Instant::now();
    let options = PredictOptions::default().top_k(classes);
    let (answered, _) = answered(
        move |reply| service.predict(&["studio"], vec![input], &options, reply),
        None,
    )
    .await?;
    let answer = match answered.answers.into_iter().next() {
        Some(Ok(per_model)) => per_model.first().map_or(Value::Null, answer_json),
        Some(Err(reason)) => return Err(bad_request(reason)),
        None => Value::Null,
    };
    Ok(Json(json!({
        "answer": answer,
        "milliseconds": started.elapsed().as_secs_f64() * 1e3,
    })))
}

/// `headstart audit` of the dataset as it is now, on the features the last training used (the studio's backbone
/// before any).
pub async fn audit(State(studio): State<Arc<Studio>>) -> Result<Json<Value>, Failure> {
    let shared = studio.clone();
    let found = blocking(move || {
        let data = shared.dataset.data()?;
        let (backbone, options) = {
            let model = shared.model.read().unwrap_or_else(|e| e.into_inner());
            match model.as_ref() {
                Some(model) => (
                    Some(model.setting.backbone.clone()),
                    model.embedding.clone(),
                ),
                None => (shared.backbone.clone(), shared.options.clone()),
            }
        };
        workflow::audit_data(
            &data,
            None,
            backbone.as_ref(),
            &options,
            &EmbedOptions::default(),
            &Default::default(),
            &mut |done, total| shared.set_progress("embedding", done, total),
        )
    })
    .await;
    studio.set_progress("", 0, 0);
    let audit = found?.audit;
    Ok(Json(json!({
        "label_issues": audit.label_issues,
        "duplicates": audit.duplicates,
        "outliers": audit.outliers,
        "summary": audit.summary,
        "fixes": audit.fixes(),
    })))
}

/// The bundle trained last, as a file to save.
pub async fn bundle(State(studio): State<Arc<Studio>>) -> Result<Response, Failure> {
    let shared = studio.clone();
    let bytes = blocking(move || {
        let (path, _) = shared.trained_bundle()?;
        std::fs::read(&path).map_err(|e| headstart::Error::io(&path, e))
    })
    .await?;
    Ok(download(bytes, &format!("{}.hs", studio.name())))
}

/// The trained bundle as one ONNX file: `fp32`, `int8` (calibrated on the folder's images), `raw` (uint8 pixels
/// in) or `head` (embeddings in), as `headstart export` writes them. A text bundle has `fp32` (token ids in)
/// and `head`.
pub async fn export(
    State(studio): State<Arc<Studio>>,
    Path(kind): Path<String>,
) -> Result<Response, Failure> {
    let options = match (kind.as_str(), &studio.dataset) {
        ("fp32", _) => ExportOptions::default(),
        ("int8", Dataset::Images(folder)) => ExportOptions::default()
            .int8(true)
            .calibrate_on(folder.root(), CalibrationSettings::default()),
        ("raw", Dataset::Images(_)) => ExportOptions::default().raw_input(true),
        ("head", _) => ExportOptions::default().head_only(true),
        (other, Dataset::Images(_)) => {
            return Err(bad_request(format!(
                "{other} is not an export: fp32, int8, raw or head"
            )));
        }
        (other, Dataset::Texts(_) | Dataset::TextFolder(_)) => {
            return Err(bad_request(format!(
                "{other} is not an export of a text bundle: fp32 or head"
            )));
        }
    };
    let shared = studio.clone();
    let name = format!("{}-{kind}.onnx", studio.name());
    let bytes = blocking(move || {
        let (bundle, backbone) = shared.trained_bundle()?;
        // Written beside the bundle only while it is read back: the folder is the user's, not a store of exports.
        let out = bundle.with_extension(format!("{kind}.onnx"));
        export::export(
            &bundle,
            backbone.as_ref(),
            &shared.options.runtime,
            &options,
            &out,
        )?;
        let bytes = std::fs::read(&out).map_err(|e| headstart::Error::io(&out, e));
        let _ = std::fs::remove_file(&out);
        bytes
    })
    .await?;
    Ok(download(bytes, &name))
}

/// `bytes` as a file the browser saves as `name`.
fn download(bytes: Vec<u8>, name: &str) -> Response {
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', ""));
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}

impl Studio {
    /// The dataset's name (its folder's, or its table's without the extension), for the files it hands out.
    fn name(&self) -> String {
        let path = match &self.dataset {
            Dataset::Images(folder) | Dataset::TextFolder(folder) => folder.root().file_name(),
            Dataset::Texts(table) => table.path().file_stem(),
        };
        path.map_or_else(
            || "studio".to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// Where the bundle trained last is kept: `.headstart/studio.hs` in an image folder, `.headstart/NAME.hs`
    /// beside a table.
    fn bundle_path(&self) -> PathBuf {
        let file = match &self.dataset {
            Dataset::Images(_) | Dataset::TextFolder(_) => "studio.hs".to_string(),
            Dataset::Texts(_) => format!("{}.hs", self.name()),
        };
        self.dataset
            .home()
            .join(headstart::data::folder::OWN)
            .join(file)
    }

    /// The bundle trained last and the backbone to open it with: the one it was trained on (the form may have
    /// chosen another than the studio's), or the studio's for a bundle from before it started.
    fn trained_bundle(&self) -> headstart::Result<(PathBuf, Option<BackboneRef>)> {
        let path = self.bundle_path();
        if !path.is_file() {
            return Err(headstart::Error::input(
                &path,
                "train first: there is no bundle yet",
            ));
        }
        let model = self.model.read().unwrap_or_else(|e| e.into_inner());
        let backbone = match model.as_ref() {
            Some(model) => Some(model.setting.backbone.clone()),
            None => self.backbone.clone(),
        };
        Ok((path, backbone))
    }

    fn folder(&self) -> headstart::Result<&DatasetFolder> {
        match &self.dataset {
            Dataset::Images(folder) => Ok(folder),
            Dataset::Texts(_) | Dataset::TextFolder(_) => Err(headstart::Error::input(
                self.dataset.home(),
                "holds texts: it has rows, not images",
            )),
        }
    }

    fn set_progress(&self, stage: &str, done: usize, total: usize) {
        self.progress.send_replace(Progress {
            stage: stage.to_string(),
            done,
            total,
        });
    }

    fn cached_thumbnail(&self, relative: &str) -> Option<Thumbnail> {
        self.thumbnails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(relative)
            .cloned()
    }

    fn keep_thumbnail(
        &self,
        relative: String,
        modified: std::time::SystemTime,
        jpeg: Arc<Vec<u8>>,
    ) {
        self.thumbnails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                relative,
                Thumbnail {
                    made_from: modified,
                    jpeg,
                },
            );
    }

    /// Embeds and trains on the dataset, saves the bundle, and serves it for "try it"; each stage is told to the
    /// progress stream.
    fn train(&self, form: &TrainForm) -> headstart::Result<Value> {
        let started = Instant::now();
        self.set_progress("reading the data", 0, 0);
        let data = self.dataset.data()?;
        let defaults = TrainParams::default();
        let head = match &form.head {
            Some(name) => name.parse::<HeadKind>()?,
            None => defaults.head,
        };
        let backbone = self.backbone_named(form.backbone.as_deref())?;
        let auto = match form.features.as_deref() {
            None | Some("given") => false,
            Some("auto") => true,
            Some(other) => {
                return Err(headstart::Error::InvalidParameter {
                    name: "features",
                    message: format!("'{other}' is neither given nor auto"),
                });
            }
        };
        let setting = Setting {
            head,
            backbone: backbone.clone(),
        };
        let (previous, kept_c) = {
            let model = self.model.read().unwrap_or_else(|e| e.into_inner());
            let previous = model.as_ref().map(|m| m.report["accuracy"].clone());
            // Other features (chosen again, or another backbone) may want another strength.
            let kept_c = model
                .as_ref()
                .filter(|m| !form.search && !auto && m.setting == setting)
                .and_then(|m| m.chosen_c);
            (previous, kept_c)
        };
        let mut params = TrainParams::default()
            .head(head)
            .folds(form.folds.unwrap_or(defaults.folds))
            .seed(form.seed.unwrap_or(defaults.seed))
            .k(form.k.unwrap_or(defaults.k))
            .grid(kept_c.map_or(defaults.grid, |c| vec![c]));
        if let Some(weight) = &form.class_weight {
            params = params.class_weight(weight.parse()?);
        }
        if let Some(rate) = form.open_set {
            let seed = params.seed;
            params = params.open_set(NoveltyParams::default().false_rejection(rate).seed(seed));
        }
        let (backbone, options, compared) = match auto {
            true => self.choose_features(&data, Some(&backbone), &params)?,
            false => (backbone, self.options.clone(), Value::Null),
        };
        self.set_progress("embedding", 0, 0);
        let (set, summary) = workflow::embeddings_for(
            &data,
            Some(&backbone),
            &options,
            &EmbedOptions::default(),
            &mut |done, total| self.set_progress("embedding", done, total),
        )?;
        let searched = match head {
            HeadKind::Logistic | HeadKind::LinearSvm if params.grid.len() > 1 => {
                format!(", {} values of C", params.grid.len())
            }
            _ => String::new(),
        };
        self.set_progress(
            &format!("cross-validating over {} folds{searched}", params.folds),
            0,
            0,
        );
        let reviewed = workflow::train_reviewed(&set, &params)?;
        self.set_progress("saving the bundle", 0, 0);
        let path = self.bundle_path();
        reviewed.trained.bundle.save(&path)?;
        let service = self.service_for(&path)?;
        let report = &reviewed.trained.report;
        let value = json!({
            "trained": true,
            "accuracy": reviewed.metrics.accuracy,
            "previous_accuracy": previous,
            "fold_accuracies": report.fold_accuracies,
            "folds": report.folds,
            "head": report.head,
            "backbone": backbone.to_string(),
            "features": compared,
            "open_set": params.open_set.is_some(),
            "chosen_c": report.chosen_c,
            "c_kept": kept_c.is_some(),
            "samples": report.samples,
            "class_names": set.class_names,
            "per_class": reviewed.metrics.per_class,
            "confusion": reviewed.metrics.confusion,
            "ece": reviewed.metrics.ece,
            "answers": reviewed.answers,
            "embedded": summary,
            "seconds": started.elapsed().as_secs_f64(),
        });
        *self.model.write().unwrap_or_else(|e| e.into_inner()) = Some(Model {
            service,
            setting,
            embedding: options,
            chosen_c: report.chosen_c,
            report: value.clone(),
        });
        Ok(value)
    }

    /// The backbone the form names: one of the zoo's for the dataset's kind, or the one the studio was started
    /// with (a page may not name files).
    fn backbone_named(&self, name: Option<&str>) -> headstart::Result<BackboneRef> {
        let started =
            BackboneRef::given_or_default(self.backbone.as_ref(), self.dataset.modality());
        match name {
            None => Ok(started),
            Some(name) if name == started.to_string() => Ok(started),
            Some(name) => match zoo::find(name) {
                Ok(model) if model.modality == self.dataset.modality() => {
                    Ok(BackboneRef::Zoo(model.name))
                }
                _ => Err(headstart::Error::InvalidParameter {
                    name: "backbone",
                    message: format!(
                        "'{name}' is not one of this studio's: {}",
                        self.backbones().join(", ")
                    ),
                }),
            },
        }
    }

    /// The backbones the form offers: the one the studio was started with, then the zoo's others of its kind.
    pub(super) fn backbones(&self) -> Vec<String> {
        let started =
            BackboneRef::given_or_default(self.backbone.as_ref(), self.dataset.modality())
                .to_string();
        let mut names = vec![started.clone()];
        names.extend(
            zoo::models()
                .into_iter()
                .filter(|m| m.modality == self.dataset.modality() && m.name != started)
                .map(|m| m.name),
        );
        names
    }

    /// `train --features auto` on the dataset: compares the backbone's output with its late layers by
    /// cross-validation; answers the backbone and options with the chosen features, and the comparison.
    fn choose_features(
        &self,
        data: &Data,
        backbone: Option<&BackboneRef>,
        params: &TrainParams,
    ) -> headstart::Result<(BackboneRef, BackboneOptions, Value)> {
        let stage = std::cell::RefCell::new("choosing features".to_string());
        let search = workflow::search_features(
            data,
            &workflow::Validation::None,
            backbone,
            &self.options,
            &EmbedOptions::default(),
            params,
            &SearchSettings::default(),
            &mut |event| {
                if let SearchEvent::Starting {
                    index,
                    planned,
                    candidate,
                } = event
                {
                    *stage.borrow_mut() =
                        format!("choosing features: {} of {planned}, {candidate}", index + 1);
                    self.set_progress(&stage.borrow(), 0, 0);
                }
            },
            &mut |done, total| self.set_progress(&stage.borrow(), done, total),
        )?;
        let candidates: Vec<Value> = search
            .scored
            .iter()
            .map(|s| {
                json!({
                    "features": s.candidate.to_string(),
                    "dim": s.dim,
                    "cv_accuracy": s.cv_accuracy,
                    "fold_spread": s.fold_spread(),
                })
            })
            .collect();
        let chosen = &search.scored[search.chosen].candidate;
        Ok((
            chosen.backbone.clone(),
            chosen.options(&self.options),
            json!({"candidates": candidates, "chosen": search.chosen}),
        ))
    }

    /// The service for the bundle at `path`: the running one reloads it (keeping its backbone when the bundle's
    /// is the same), or a new one opens it.
    fn service_for(&self, path: &std::path::Path) -> headstart::Result<Arc<Service>> {
        let running = {
            let model = self.model.read().unwrap_or_else(|e| e.into_inner());
            model.as_ref().map(|m| m.service.clone())
        };
        if let Some(service) = running {
            service.reload("studio")?;
            return Ok(service);
        }
        let options = ServiceOptions::default().runtime(self.options.runtime.clone());
        Ok(Arc::new(Service::open(
            &[("studio".to_string(), path.to_path_buf())],
            &options,
        )?))
    }
}
