//! `headstart studio`'s server: the page (served from the binary) and a JSON API over a dataset, on the
//! same stack as `headstart serve`. Only the person who started it may drive it: every request must carry the
//! random token it printed (the page keeps it in a cookie), name the address it listens on as its `Host` (no DNS
//! rebinding), and come from no other web page (`Origin`).

mod routes;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use headstart::backbone::{BackboneOptions, BackboneRef};
use headstart::classifier::Service;
use headstart::data::{Data, DatasetFolder, TextOptions, TextTable};
use tower_http::catch_panic::CatchPanicLayer;

use super::{Failure, log_access, panic_answer};

/// What the studio works on, and how.
pub struct StudioSettings {
    pub address: SocketAddr,
    pub backbone: Option<BackboneRef>,
    pub options: BackboneOptions,
    /// One line per request on standard error.
    pub access_log: bool,
}

/// What a studio edits.
pub enum Dataset {
    /// A folder with one sub-folder of images per class.
    Images(DatasetFolder),
    /// A text table: a text and a label column.
    Texts(TextTable),
    /// A folder with one sub-folder of `.txt` files per class.
    TextFolder(DatasetFolder),
}

impl Dataset {
    /// The folder the dataset lives in (the class folders' parent, or the table's).
    fn home(&self) -> &std::path::Path {
        match self {
            Dataset::Images(folder) | Dataset::TextFolder(folder) => folder.root(),
            Dataset::Texts(table) => table.path().parent().unwrap_or(table.path()),
        }
    }

    fn modality(&self) -> headstart::Modality {
        match self {
            Dataset::Images(_) => headstart::Modality::Image,
            Dataset::Texts(_) | Dataset::TextFolder(_) => headstart::Modality::Text,
        }
    }

    /// The dataset as training reads it now.
    fn data(&self) -> headstart::Result<Data> {
        Ok(match self {
            Dataset::Images(folder) | Dataset::TextFolder(folder) => {
                Data::open(folder.root(), &TextOptions::default())?
            }
            Dataset::Texts(table) => Data::Texts(table.read()?),
        })
    }
}

/// The studio's state, shared by its handlers.
struct Studio {
    dataset: Dataset,
    token: String,
    /// `Host` values it answers: its address, by number and as `localhost`.
    hosts: Vec<String>,
    /// The address it listens on.
    address: SocketAddr,
    backbone: Option<BackboneRef>,
    options: BackboneOptions,
    /// How far the training (or audit) running now is; idle when its stage is empty.
    progress: tokio::sync::watch::Sender<Progress>,
    /// One training at a time.
    training: tokio::sync::Mutex<()>,
    /// The last bundle trained, serving "try it".
    model: RwLock<Option<Model>>,
    /// Thumbnails made, by path.
    thumbnails: Mutex<HashMap<String, Thumbnail>>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct Progress {
    stage: String,
    done: usize,
    total: usize,
}

/// A JPEG thumbnail and the modification time of the file it was made from.
#[derive(Clone)]
struct Thumbnail {
    made_from: std::time::SystemTime,
    jpeg: Arc<Vec<u8>>,
}

struct Model {
    service: Arc<Service>,
    /// What it was trained with: a retraining with the same keeps its regularisation strength.
    setting: Setting,
    /// How its backbone embedded (the features `auto` chose among them): the audit embeds the same way.
    embedding: BackboneOptions,
    /// The regularisation strength cross-validation chose (logistic, linear-svm).
    chosen_c: Option<f64>,
    /// What training answered: metrics, confusion cells, mistakes.
    report: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
struct Setting {
    head: headstart::head::HeadKind,
    backbone: BackboneRef,
}

/// Serves the studio over `dataset` until SIGTERM or Ctrl-C; `listening` is told the address it answers on and
/// the token to open it with.
pub fn studio(
    dataset: Dataset,
    settings: StudioSettings,
    listening: impl FnOnce(SocketAddr, &str),
) -> std::io::Result<()> {
    super::run(settings.address, move |address| {
        let token = random_token();
        listening(address, &token);
        let port = address.port();
        let mut hosts = vec![format!("localhost:{port}"), address.to_string()];
        if address.ip().is_loopback() {
            hosts.push(format!("127.0.0.1:{port}"));
        }
        let studio = Arc::new(Studio {
            dataset,
            token,
            hosts,
            address,
            backbone: settings.backbone,
            options: settings.options,
            progress: tokio::sync::watch::Sender::new(Progress::default()),
            training: tokio::sync::Mutex::new(()),
            model: RwLock::new(None),
            thumbnails: Mutex::new(HashMap::new()),
        });
        let stopping = studio.clone();
        // Ends the progress streams pages hold open, which would keep the server waiting for them.
        let end_streams = move || {
            stopping.progress.send_replace(Progress::default());
        };
        Ok((router(studio, settings.access_log), end_streams))
    })
}

/// The largest upload taken at once.
const MAX_UPLOAD: usize = 256 << 20;

fn router(studio: Arc<Studio>, access_log: bool) -> Router {
    let mut router = Router::new()
        .route("/", get(routes::page))
        .route("/studio.js", get(routes::script))
        .route("/studio.css", get(routes::style))
        .route("/api/data", get(routes::data))
        .route("/api/thumbnail/{*path}", get(routes::thumbnail))
        .route("/api/image/{*path}", get(routes::image))
        .route("/api/classes", post(routes::add_class))
        .route("/api/images/{class}", post(routes::add_images))
        .route("/api/texts", post(routes::add_texts))
        .route("/api/move", post(routes::move_image))
        .route("/api/trash", post(routes::trash))
        .route("/api/restore", post(routes::restore))
        .route("/api/train", post(routes::train))
        .route("/api/progress", get(routes::progress))
        .route("/api/model", get(routes::model))
        .route("/api/predict", post(routes::predict))
        .route("/api/audit", post(routes::audit))
        .route("/api/bundle", get(routes::bundle))
        .route("/api/export/{kind}", get(routes::export))
        .route_layer(middleware::from_fn_with_state(studio.clone(), guard))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD))
        .layer(CatchPanicLayer::custom(panic_answer));
    if access_log {
        router = router.layer(middleware::from_fn(log_access));
    }
    router.with_state(studio)
}

/// Refuses a request that does not name the studio's own address as its `Host`, comes from another page's
/// `Origin`, or carries no token (in the query, the cookie the page set, or `X-Headstart-Token`).
async fn guard(State(studio): State<Arc<Studio>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !studio.answers_as(host) {
        return Failure(
            StatusCode::FORBIDDEN,
            format!("this studio answers as {}, not {host}", studio.hosts[0]),
        )
        .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = origin.to_str().ok().and_then(|o| o.strip_prefix("http://"));
        if !own.is_some_and(|o| studio.answers_as(o)) {
            return Failure(
                StatusCode::FORBIDDEN,
                "requests from other web pages are refused".into(),
            )
            .into_response();
        }
    }
    let in_query = request.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair.strip_prefix("token=") == Some(studio.token.as_str()))
    });
    if in_query || carries_token(headers, &studio.token) {
        return next.run(request).await;
    }
    Failure(
        StatusCode::UNAUTHORIZED,
        "this studio needs its token: open the address `headstart studio` printed".into(),
    )
    .into_response()
}

impl Studio {
    /// Whether `host` (a `Host` header, or an `Origin` without its scheme) names this studio: its address, by number
    /// or as `localhost`; listening on every address (0.0.0.0, ::), any IP address with its port, as the machine's
    /// other addresses are. A name other than localhost never passes: that is how DNS rebinding would come in.
    fn answers_as(&self, host: &str) -> bool {
        self.hosts.iter().any(|allowed| allowed == host)
            || (self.address.ip().is_unspecified()
                && host
                    .parse::<SocketAddr>()
                    .is_ok_and(|at| at.port() == self.address.port()))
    }
}

/// The cookie the page keeps the token in.
const COOKIE: &str = "headstart_studio";

fn carries_token(headers: &HeaderMap, token: &str) -> bool {
    let in_header = headers
        .get("x-headstart-token")
        .is_some_and(|value| value.as_bytes() == token.as_bytes());
    let in_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .any(|(name, value)| name == COOKIE && value == token);
    in_header || in_cookie
}

/// 128 random bits as hex, from the operating system's seed of the standard library's hasher.
fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..2)
        .map(|_| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(std::process::id().into());
            format!("{:016x}", hasher.finish())
        })
        .collect()
}
