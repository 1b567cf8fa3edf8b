//! What `GET /metrics` reports, in Prometheus' text format (prometheus-client): requests by route, model and status,
//! inputs answered, request / decode / queue / inference durations, batch sizes, and calls waiting.

use std::time::Duration;

use axum::http::StatusCode;
use headstart::classifier::BatchRun;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    model: String,
    status: u16,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    inputs: Counter,
    request_seconds: Histogram,
    decode_seconds: Histogram,
    queue_seconds: Histogram,
    inference_seconds: Histogram,
    batch_inputs: Histogram,
    waiting: Gauge,
}

/// 1 ms to about 16 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let inputs = Counter::default();
        let (request_seconds, decode_seconds, queue_seconds, inference_seconds) =
            (seconds(), seconds(), seconds(), seconds());
        let batch_inputs = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let waiting = Gauge::default();
        registry.register(
            "headstart_requests",
            "Prediction and embedding requests by route, model and status",
            requests.clone(),
        );
        registry.register("headstart_inputs", "Inputs answered", inputs.clone());
        registry.register(
            "headstart_request_duration_seconds",
            "Prediction and embedding requests, from the body read to the answer",
            request_seconds.clone(),
        );
        registry.register(
            "headstart_decode_duration_seconds",
            "Decoding and preprocessing a request's inputs",
            decode_seconds.clone(),
        );
        registry.register(
            "headstart_queue_duration_seconds",
            "Waiting for the backbone",
            queue_seconds.clone(),
        );
        registry.register(
            "headstart_inference_duration_seconds",
            "The backbone run and the heads of a request's batch",
            inference_seconds.clone(),
        );
        registry.register(
            "headstart_batch_inputs",
            "Inputs in the backbone run that answered a request",
            batch_inputs.clone(),
        );
        registry.register(
            "headstart_queue_waiting",
            "Requests waiting for a backbone",
            waiting.clone(),
        );
        Metrics {
            registry,
            requests,
            inputs,
            request_seconds,
            decode_seconds,
            queue_seconds,
            inference_seconds,
            batch_inputs,
            waiting,
        }
    }

    /// A request to `route` (predict, embed, embeddings) answered with `status` after `took`.
    pub fn request(&self, route: &'static str, model: &str, status: StatusCode, took: Duration) {
        let labels = RequestLabels {
            route,
            model: model.to_string(),
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.observe(took.as_secs_f64());
    }

    /// A request's `inputs` answered: how long decoding took and how its batch ran.
    pub fn answered(&self, inputs: usize, decode: Duration, batch: &BatchRun) {
        self.inputs.inc_by(inputs as u64);
        self.decode_seconds.observe(decode.as_secs_f64());
        self.queue_seconds.observe(batch.waited.as_secs_f64());
        self.inference_seconds.observe(batch.ran.as_secs_f64());
        self.batch_inputs.observe(batch.inputs as f64);
    }

    /// The text a scrape gets, with `waiting` requests queued now.
    pub fn render(&self, waiting: usize) -> String {
        self.waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
