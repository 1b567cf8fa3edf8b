//! The routes' handlers: read the request, ask the service, write JSON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use headstart::classifier::{Answered, Input, Reply, ServedModel, Service};
use headstart::{Error, Modality, PredictOptions};
use serde::Deserialize;
use serde_json::{Value, json};

use super::inputs::{self, parse_json};
use super::{App, Failure, bad_request};
use crate::cli::print::answer_json;

pub async fn scrape(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(app.service.waiting());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

pub async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    let models: Vec<Value> = app.service.models().iter().map(model_json).collect();
    Json(json!({ "models": models }))
}

fn model_json(model: &ServedModel) -> Value {
    let info = &model.bundle.info;
    json!({
        "name": model.name,
        "path": model.path,
        "classes": info.class_names,
        "backbone": info.features.source.to_string(),
        "head": info.training.head.name(),
        "modality": modality_name(info.features.input.modality()),
        "open_set_threshold": model.bundle.novelty.as_ref().map(|n| n.threshold),
        "cv_accuracy": info.training.cv_accuracy,
        "samples": info.training.samples,
    })
}

fn modality_name(modality: Modality) -> &'static str {
    match modality {
        Modality::Image => "image",
        Modality::Text => "text",
    }
}

/// Reads the bundle again from its file; a file that cannot be loaded leaves the one loaded before serving.
pub async fn reload(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let shared = app.clone();
    let reloaded = tokio::task::spawn_blocking(move || shared.service.reload(&name)).await;
    match reloaded {
        Ok(Ok(model)) => Json(json!({ "reloaded": model_json(&model) })).into_response(),
        Ok(Err(Error::UnknownModel(name))) => {
            Failure::from(Error::UnknownModel(name)).into_response()
        }
        Ok(Err(e)) => Failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{e}; the bundle loaded before goes on serving"),
        )
        .into_response(),
        Err(e) => Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `?top_k=&min_confidence=`, with the defaults of `headstart predict`.
#[derive(Deserialize)]
pub struct AnswerQuery {
    #[serde(default = "default_top_k")]
    top_k: usize,
    #[serde(default)]
    min_confidence: f32,
}

fn default_top_k() -> usize {
    3
}

impl AnswerQuery {
    fn options(&self) -> PredictOptions {
        PredictOptions::default()
            .top_k(self.top_k)
            .min_confidence(self.min_confidence)
    }
}

/// One model: a raw image or text body, multipart parts, or JSON `{"inputs": [...]}`.
pub async fn predict_one(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    query: Result<Query<AnswerQuery>, QueryRejection>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let response = answer_one(app.clone(), name.clone(), query, request)
        .await
        .into_response();
    app.metrics
        .request("predict", &name, response.status(), started.elapsed());
    response
}

async fn answer_one(
    app: Arc<App>,
    name: String,
    query: Result<Query<AnswerQuery>, QueryRejection>,
    request: Request,
) -> Result<Json<Value>, Failure> {
    let model = app.service.model(&name)?;
    let inputs = inputs::read(request, model.bundle.info.features.input.modality()).await?;
    let options = query?.options();
    let answers = call(app, inputs.len(), move |service, reply| {
        service.predict(&[&name], inputs, &options, reply)
    })
    .await?;
    let predictions: Vec<Value> = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(per_model) => per_model.first().map_or(Value::Null, answer_json),
            Err(reason) => json!({ "error": reason }),
        })
        .collect();
    Ok(Json(json!({ "predictions": predictions })))
}

#[derive(Deserialize)]
struct ModelsRequest {
    models: Vec<String>,
    inputs: Vec<String>,
}

/// Several models over one embedding of each input: JSON `{"models": [...], "inputs": [...]}`.
pub async fn predict_many(
    State(app): State<Arc<App>>,
    query: Result<Query<AnswerQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let request = body
        .map_err(Failure::from)
        .and_then(|body| parse_json::<ModelsRequest>(&body));
    // Counted under the models' names joined with '+' (an empty name for a body that could not be read).
    let models = request
        .as_ref()
        .map_or_else(|_| String::new(), |request| request.models.join("+"));
    let response = match request {
        Ok(request) => answer_many(app.clone(), query, request)
            .await
            .into_response(),
        Err(failure) => failure.into_response(),
    };
    app.metrics
        .request("predict", &models, response.status(), started.elapsed());
    response
}

async fn answer_many(
    app: Arc<App>,
    query: Result<Query<AnswerQuery>, QueryRejection>,
    request: ModelsRequest,
) -> Result<Json<Value>, Failure> {
    let Some(first) = request.models.first() else {
        return Err(bad_request("models must name at least one model"));
    };
    let modality = app
        .service
        .model(first)?
        .bundle
        .info
        .features
        .input
        .modality();
    let inputs = inputs::from_json(request.inputs, modality)?;
    let options = query?.options();
    let names = request.models;
    let asked = names.clone();
    let answers = call(app, inputs.len(), move |service, reply| {
        let asked: Vec<&str> = asked.iter().map(String::as_str).collect();
        service.predict(&asked, inputs, &options, reply)
    })
    .await?;
    let predictions: Vec<Value> = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(per_model) => {
                let by_model: serde_json::Map<String, Value> = names
                    .iter()
                    .cloned()
                    .zip(per_model.iter().map(answer_json))
                    .collect();
                json!({ "models": by_model })
            }
            Err(reason) => json!({ "error": reason }),
        })
        .collect();
    Ok(Json(json!({ "predictions": predictions })))
}

/// The embeddings of the model's backbone, in the inputs' forms `predict` takes.
pub async fn embed_one(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let response = embed_answer(app.clone(), name.clone(), request)
        .await
        .into_response();
    app.metrics
        .request("embed", &name, response.status(), started.elapsed());
    response
}

async fn embed_answer(
    app: Arc<App>,
    name: String,
    request: Request,
) -> Result<Json<Value>, Failure> {
    let model = app.service.model(&name)?;
    let inputs = inputs::read(request, model.bundle.info.features.input.modality()).await?;
    let embeddings = call(app, inputs.len(), move |service, reply| {
        service.embed(&name, inputs, reply)
    })
    .await?;
    let embeddings: Vec<Value> = embeddings
        .into_iter()
        .map(|embedding| match embedding {
            Ok(values) => json!(values),
            Err(reason) => json!({ "error": reason }),
        })
        .collect();
    Ok(Json(json!({ "embeddings": embeddings })))
}

/// OpenAI's embeddings request: `input` is one text or several.
#[derive(Deserialize)]
struct OpenAiRequest {
    model: String,
    input: OneOrMany,
    #[serde(default)]
    encoding_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// OpenAI's `POST /v1/embeddings`, for the text bundles: `model` is a served name.
pub async fn openai_embeddings(
    State(app): State<Arc<App>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let request = body
        .map_err(Failure::from)
        .and_then(|body| parse_json::<OpenAiRequest>(&body));
    let model = request
        .as_ref()
        .map_or_else(|_| String::new(), |request| request.model.clone());
    let response = match request {
        Ok(request) => openai_answer(app.clone(), request).await.into_response(),
        Err(failure) => failure.into_response(),
    };
    app.metrics
        .request("embeddings", &model, response.status(), started.elapsed());
    response
}

async fn openai_answer(app: Arc<App>, request: OpenAiRequest) -> Result<Json<Value>, Failure> {
    let as_base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "encoding_format is float or base64, not '{other}'"
            )));
        }
    };
    let model = app.service.model(&request.model)?;
    if model.bundle.info.features.input.modality() != Modality::Text {
        return Err(bad_request(format!(
            "'{}' takes images: use /v1/models/{}/embed",
            request.model, request.model
        )));
    }
    let texts = match request.input {
        OneOrMany::One(text) => vec![text],
        OneOrMany::Many(texts) => texts,
    };
    let inputs: Vec<Input> = texts.into_iter().map(Input::Text).collect();
    let name = request.model.clone();
    let embeddings = call(app, inputs.len(), move |service, reply| {
        service.embed(&name, inputs, reply)
    })
    .await?;
    let data = embeddings
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| {
            let values = embedding.map_err(|reason| Failure(StatusCode::BAD_REQUEST, reason))?;
            let embedding = match as_base64 {
                true => {
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                false => json!(values),
            };
            Ok(json!({"object": "embedding", "embedding": embedding, "index": index}))
        })
        .collect::<Result<Vec<Value>, Failure>>()?;
    Ok(Json(
        json!({"object": "list", "data": data, "model": request.model}),
    ))
}

/// Makes `ask` send the inputs to the service on a blocking thread (the service decodes them there) and waits
/// for the answers; at most one request per core decodes at a time.
async fn call<T: Send + 'static>(
    app: Arc<App>,
    inputs: usize,
    ask: impl FnOnce(&Service, Reply<T>) -> Result<(), Error> + Send + 'static,
) -> Result<Vec<Result<T, String>>, Failure> {
    let decoding = app
        .decoding
        .acquire()
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let shared = app.clone();
    let (Answered { answers, batch }, decode) =
        answered(move |reply| ask(&shared.service, reply), Some(decoding)).await?;
    app.metrics.answered(inputs, decode, &batch);
    Ok(answers)
}

/// Runs `ask` (which hands inputs to a service, answering through the reply it is given) on a blocking thread,
/// lets `decoding` go once it returns, and waits for the answers; also says how long `ask` took.
pub(super) async fn answered<T: Send + 'static>(
    ask: impl FnOnce(Reply<T>) -> Result<(), Error> + Send + 'static,
    decoding: Option<tokio::sync::SemaphorePermit<'_>>,
) -> Result<(Answered<T>, Duration), Failure> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let decode = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        ask(Box::new(move |answers| {
            let _ = sender.send(answers);
        }))?;
        Ok::<Duration, Error>(started.elapsed())
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    drop(decoding);
    let answered = receiver.await.map_err(|_| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the backbone stopped before answering".into(),
        )
    })??;
    Ok((answered, decode))
}
