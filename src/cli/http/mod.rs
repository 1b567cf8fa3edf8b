//! `headstart serve`'s HTTP layer: JSON routes over [`Service`], which owns the backbones, the batching and the
//! reloading. A handler reads the request, hands the inputs to the service on a blocking thread (decoding
//! happens there) and writes the answers; errors are JSON `{"error": "..."}` with a 4xx status for what the
//! caller sent.

mod inputs;
mod metrics;
mod routes;
pub mod studio;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use headstart::Error;
use headstart::classifier::Service;
use serde_json::json;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;

use metrics::Metrics;

/// What every handler shares.
struct App {
    service: Service,
    metrics: Metrics,
    /// Requests decoding at once: one per core, so decoding does not crowd out the backbone's threads.
    decoding: Semaphore,
}

/// Where and how much the server takes.
pub struct Settings {
    pub address: SocketAddr,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// Requests answered at once; more are refused with 429.
    pub max_concurrent: usize,
    /// How long a request may take before it is answered 503; `None`: no limit.
    pub timeout: Option<Duration>,
    /// The bearer key every route but `/health`, `/ready` and `/metrics` asks for; `None`: no key.
    pub api_key: Option<String>,
    /// One line per request on standard error.
    pub access_log: bool,
}

/// Serves until SIGTERM or Ctrl-C, then stops taking connections and answers every request already taken;
/// SIGHUP reloads every bundle from its file. `listening` is told the address once the socket is bound.
pub fn serve(
    service: Service,
    settings: Settings,
    listening: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    run(settings.address, move |address| {
        listening(address);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let app = Arc::new(App {
            service,
            metrics: Metrics::new(),
            decoding: Semaphore::new(cores),
        });
        tokio::spawn(reload_on_hangup(app.clone()));
        Ok((router(app, &settings), || {}))
    })
}

/// Serves the router `build` makes on a runtime of its own until SIGTERM or Ctrl-C. `build` is told the address
/// bound (port 0 becomes a free port) and runs inside the runtime (it may spawn tasks); with the router it gives
/// what to do once the signal came.
fn run<Stopping: FnOnce() + Send + 'static>(
    address: SocketAddr,
    build: impl FnOnce(SocketAddr) -> std::io::Result<(Router, Stopping)>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let (router, stopping) = build(listener.local_addr()?)?;
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                stop_signal().await;
                stopping();
            })
            .await
    })
}

/// What a request that panicked is answered: a 500 that says no more (the server goes on).
fn panic_answer(_: Box<dyn std::any::Any + Send>) -> Response {
    Failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "headstart failed answering this request".into(),
    )
    .into_response()
}

fn router(app: Arc<App>, settings: &Settings) -> Router {
    let mut api = Router::new()
        .route("/v1/models", get(routes::models))
        .route("/v1/models/{name}/predict", post(routes::predict_one))
        .route("/v1/models/{name}/embed", post(routes::embed_one))
        .route("/v1/models/{name}/reload", post(routes::reload))
        .route("/v1/predict", post(routes::predict_many))
        .route("/v1/embeddings", post(routes::openai_embeddings));
    if let Some(limit) = settings.timeout {
        api = api.route_layer(middleware::from_fn(move |request: Request, next: Next| {
            answer_within(limit, request, next)
        }));
    }
    let in_flight = Arc::new(Semaphore::new(settings.max_concurrent));
    api = api.route_layer(middleware::from_fn(move |request: Request, next: Next| {
        at_most(in_flight.clone(), request, next)
    }));
    if let Some(key) = &settings.api_key {
        let expected: Arc<str> = format!("Bearer {key}").into();
        api = api.route_layer(middleware::from_fn(move |request: Request, next: Next| {
            with_key(expected.clone(), request, next)
        }));
    }
    let mut router = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(|| async { Json(json!({"status": "ready"})) }))
        .route("/metrics", get(routes::scrape))
        .merge(api)
        .layer(DefaultBodyLimit::max(settings.max_body))
        .layer(CatchPanicLayer::custom(panic_answer));
    if settings.access_log {
        router = router.layer(middleware::from_fn(log_access));
    }
    router.with_state(app)
}

async fn with_key(expected: Arc<str>, request: Request, next: Next) -> Response {
    let given = request.headers().get(header::AUTHORIZATION);
    match given.is_some_and(|value| value.as_bytes() == expected.as_bytes()) {
        true => next.run(request).await,
        false => Failure(StatusCode::UNAUTHORIZED, "a bearer key is needed".into()).into_response(),
    }
}

/// Refuses a request beyond `--max-concurrent` at once, rather than queueing it where nobody sees it.
async fn at_most(in_flight: Arc<Semaphore>, request: Request, next: Next) -> Response {
    match in_flight.try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => Failure(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests at once".into(),
        )
        .into_response(),
    }
}

async fn answer_within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Failure(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no answer within {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// `-v`: one line per request on standard error.
async fn log_access(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let line = format!("{} {}", request.method(), request.uri().path());
    let response = next.run(request).await;
    eprintln!(
        "{line} {} {:.1} ms",
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1e3
    );
    response
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

/// SIGHUP reloads every bundle from its file; one that fails to load keeps its old one serving. Each outcome
/// is a line on standard error.
async fn reload_on_hangup(app: Arc<App>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            let app = app.clone();
            let reloaded = tokio::task::spawn_blocking(move || {
                for model in app.service.models() {
                    match app.service.reload(&model.name) {
                        Ok(_) => eprintln!("reloaded {} from {}", model.name, model.path.display()),
                        Err(e) => eprintln!(
                            "kept the {} loaded before, as {} cannot be loaded: {e}",
                            model.name,
                            model.path.display()
                        ),
                    }
                }
            });
            let _ = reloaded.await;
        }
    }
    #[cfg(not(unix))]
    let _ = app;
}

/// An error answer: a status and `{"error": message}`.
struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(json!({"error": self.1}))).into_response();
        let headers = response.headers_mut();
        match self.0 {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The body was left unread, so the connection cannot carry another request: say so, or a client
            // sends its next request on it and finds it closed.
            StatusCode::PAYLOAD_TOO_LARGE => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
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
