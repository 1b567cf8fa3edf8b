//! `headstart serve`'s HTTP layer: JSON routes over [`Service`], which owns the backbones and the batching. A
//! handler reads the request, hands the inputs to the service on a blocking thread (decoding happens there) and
//! writes the answers; errors are JSON `{"error": "..."}` with a 4xx status for what the caller sent.

mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use headstart::classifier::{Answered, Input, Service};
use headstart::{Error, Modality, PredictOptions};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::catch_panic::CatchPanicLayer;

use crate::cli::print::answer_json;
use metrics::Metrics;

/// What every handler shares.
struct App {
    service: Service,
    metrics: Metrics,
}

/// Where and how much the server takes.
pub struct Settings {
    pub address: SocketAddr,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// The bearer key every route but `/health`, `/ready` and `/metrics` asks for; `None`: no key.
    pub api_key: Option<String>,
}

/// Serves until SIGTERM or Ctrl-C, then stops taking connections and answers every request already taken;
/// `listening` is told the address once the socket is bound.
pub fn serve(
    service: Service,
    settings: Settings,
    listening: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(settings.address).await?;
        listening(listener.local_addr()?);
        let app = App {
            service,
            metrics: Metrics::new(),
        };
        let app = router(Arc::new(app), settings.max_body, settings.api_key);
        axum::serve(listener, app)
            .with_graceful_shutdown(stop_signal())
            .await
    })
}

fn router(app: Arc<App>, max_body: usize, api_key: Option<String>) -> Router {
    let mut api = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/models/{name}/predict", post(predict_one))
        .route("/v1/predict", post(predict_many));
    if let Some(key) = api_key {
        let expected: Arc<str> = format!("Bearer {key}").into();
        api = api.route_layer(middleware::from_fn(move |request: Request, next: Next| {
            let expected = expected.clone();
            async move {
                let given = request.headers().get(header::AUTHORIZATION);
                match given.is_some_and(|value| value.as_bytes() == expected.as_bytes()) {
                    true => next.run(request).await,
                    false => Failure(StatusCode::UNAUTHORIZED, "a bearer key is needed".into())
                        .into_response(),
                }
            }
        }));
    }
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(|| async { Json(json!({"status": "ready"})) }))
        .route("/metrics", get(scrape))
        .merge(api)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_| {
            Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "headstart failed answering this request".into(),
            )
            .into_response()
        }))
        .with_state(app)
}

async fn stop_signal() {
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminated = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<()>();
    tokio::select! {
        () = interrupted => {},
        () = terminated => {},
    }
}

/// An error answer: a status and `{"error": message}`.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({"error": self.1}))).into_response();
        if self.0 == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::UnknownModel(_) => StatusCode::NOT_FOUND,
            Error::Busy => StatusCode::TOO_MANY_REQUESTS,
            Error::InvalidParameter { .. }
            | Error::InputMismatch { .. }
            | Error::Incompatible(_)
            | Error::Input { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &error {
            // The library names its parameters; here they are the query's and the body's fields.
            Error::InvalidParameter { name, message } => format!("{name} {message}"),
            other => other.to_string(),
        };
        Failure(status, message)
    }
}

impl From<BytesRejection> for Failure {
    fn from(rejection: BytesRejection) -> Self {
        Failure(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for Failure {
    fn from(rejection: QueryRejection) -> Self {
        Failure(rejection.status(), rejection.body_text())
    }
}

fn bad_request(message: impl Into<String>) -> Failure {
    Failure(StatusCode::BAD_REQUEST, message.into())
}

async fn scrape(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(app.service.waiting());
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Json<Value> {
    let models: Vec<Value> = app
        .service
        .models()
        .iter()
        .map(|model| {
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
        })
        .collect();
    Json(json!({ "models": models }))
}

fn modality_name(modality: Modality) -> &'static str {
    match modality {
        Modality::Image => "image",
        Modality::Text => "text",
    }
}

/// `?top_k=&min_confidence=`, with the defaults of `headstart predict`.
#[derive(Deserialize)]
struct AnswerQuery {
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

/// One model: the raw body is one image, or JSON `{"inputs": [...]}` holds base64 images or texts.
async fn predict_one(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    query: Result<Query<AnswerQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let response = answer_one(app.clone(), name.clone(), query, headers, body)
        .await
        .into_response();
    app.metrics
        .request(&name, response.status(), started.elapsed());
    response
}

async fn answer_one(
    app: Arc<App>,
    name: String,
    query: Result<Query<AnswerQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Failure> {
    let body = body?;
    let modality = modality_of(&app.service, &name)?;
    let inputs = if is_json(&headers) {
        let request: InputsRequest = parse_json(&body)?;
        inputs_from_json(request.inputs, modality)?
    } else if modality == Modality::Text {
        let text = String::from_utf8(body.to_vec()).map_err(|_| {
            bad_request("a text bundle takes a UTF-8 text as the body, or JSON inputs")
        })?;
        vec![Input::Text(text)]
    } else {
        vec![Input::Image(body.to_vec())]
    };
    let answers = answer(app, vec![name], inputs, query?.options()).await?;
    let predictions: Vec<Value> = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(per_model) => per_model.first().map_or(Value::Null, answer_json),
            Err(reason) => json!({ "error": reason }),
        })
        .collect();
    Ok(Json(json!({ "predictions": predictions })))
}

/// Several models over one embedding of each input: JSON `{"models": [...], "inputs": [...]}`.
async fn predict_many(
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
        .request(&models, response.status(), started.elapsed());
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
    let modality = modality_of(&app.service, first)?;
    let inputs = inputs_from_json(request.inputs, modality)?;
    let names = request.models.clone();
    let answers = answer(app, request.models, inputs, query?.options()).await?;
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

#[derive(Deserialize)]
struct InputsRequest {
    inputs: Vec<String>,
}

#[derive(Deserialize)]
struct ModelsRequest {
    models: Vec<String>,
    inputs: Vec<String>,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the JSON body: {e}")))
}

fn modality_of(service: &Service, name: &str) -> Result<Modality, Failure> {
    service
        .models()
        .iter()
        .find(|model| model.name == name)
        .map(|model| model.bundle.info.features.input.modality())
        .ok_or_else(|| Error::UnknownModel(name.to_string()).into())
}

/// JSON inputs as the model takes them: texts as they are, images as base64 of their file's bytes.
fn inputs_from_json(inputs: Vec<String>, modality: Modality) -> Result<Vec<Input>, Failure> {
    match modality {
        Modality::Text => Ok(inputs.into_iter().map(Input::Text).collect()),
        Modality::Image => inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map(Input::Image)
                    .map_err(|e| bad_request(format!("inputs[{index}] is not base64: {e}")))
            })
            .collect(),
    }
}

/// Hands the inputs to the service on a blocking thread (it decodes them there) and waits for the answers.
async fn answer(
    app: Arc<App>,
    models: Vec<String>,
    inputs: Vec<Input>,
    options: PredictOptions,
) -> Result<Vec<headstart::classifier::InputAnswers>, Failure> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let count = inputs.len();
    let shared = app.clone();
    let decode = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let names: Vec<&str> = models.iter().map(String::as_str).collect();
        shared.service.predict(
            &names,
            inputs,
            &options,
            Box::new(move |answers| {
                let _ = sender.send(answers);
            }),
        )?;
        Ok::<Duration, Error>(started.elapsed())
    })
    .await
    .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let Answered { answers, batch } = receiver.await.map_err(|_| {
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the backbone stopped before answering".into(),
        )
    })??;
    app.metrics.answered(count, decode, &batch);
    Ok(answers)
}
