//! `headstart serve` for real: the built binary on a free port, asked by a real HTTP client. One server holds two
//! image bundles on one backbone and a text bundle; its answers must be `headstart predict`'s.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use common::running::Running;
use common::{elpv_cells, headstart_ok, train_small_bundle};
use serde_json::{Value, json};

/// The server, stopped with SIGTERM when the test is done with it.
struct Server {
    running: Running,
    url: String,
}

impl Server {
    /// Starts `headstart serve ARGS --port 0` and waits for the address it prints.
    fn start(args: &[&str]) -> Server {
        let running = Running::start(&[&["serve"], args].concat());
        let line = &running.first_line;
        assert!(line.starts_with("serving "), "{line}");
        let address = line.rsplit("http://").next().unwrap();
        Server {
            url: format!("http://{address}"),
            running,
        }
    }

    fn stop(self) -> std::process::ExitStatus {
        self.running.stop()
    }
}

impl std::ops::Deref for Server {
    type Target = Running;

    fn deref(&self) -> &Running {
        &self.running
    }
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs `body` with `content_type`; returns the status and the JSON answer.
fn post(agent: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
    let mut response = agent
        .post(url)
        .header("content-type", content_type)
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"));
    (status, value)
}

fn post_json(agent: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    post(agent, url, "application/json", body.to_string().as_bytes())
}

/// The same label and classes, and probabilities within float noise.
fn assert_same_answer(served: &Value, by_cli: &Value) {
    assert_eq!(served["label"], by_cli["label"], "{served} vs {by_cli}");
    let top = |v: &Value| -> Vec<(String, f64)> {
        v["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["class"].as_str().unwrap().to_string(),
                    t["probability"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (top(served), top(by_cli));
    assert_eq!(a.len(), b.len(), "{served} vs {by_cli}");
    for ((class_a, p_a), (class_b, p_b)) in a.iter().zip(&b) {
        assert_eq!(class_a, class_b);
        assert!((p_a - p_b).abs() < 1e-4, "{served} vs {by_cli}");
    }
}

/// Equal to `expected` within float noise (the server batches inputs the library embedded apart).
fn assert_close(served: &Value, expected: &[f32]) {
    let served: Vec<f64> = served
        .as_array()
        .unwrap_or_else(|| panic!("not an embedding: {served}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(served.len(), expected.len());
    for (a, b) in served.iter().zip(expected) {
        assert!((a - f64::from(*b)).abs() < 1e-4, "{a} vs {b}");
    }
}

/// A multipart/form-data body with one file part per entry of `parts`.
fn multipart(boundary: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for (index, part) in parts.iter().enumerate() {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{index}.png\"\r\n\
                 Content-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn predict_json(bundle: &Path, inputs: &[&str]) -> Vec<Value> {
    let mut args = vec!["predict", bundle.to_str().unwrap()];
    args.extend_from_slice(inputs);
    args.extend_from_slice(&["--format", "json", "--top-k", "2"]);
    let out: Value = serde_json::from_str(&headstart_ok(&args)).unwrap();
    out["predictions"].as_array().unwrap().clone()
}

/// ELPV cells under `dir`, and two bundles trained on them with one backbone: a logistic head saved as
/// `{logistic}.hs` and a centroid head; also the images' copies, to send.
fn two_heads(dir: &Path, logistic: &str) -> (Vec<PathBuf>, PathBuf, PathBuf) {
    let (cells, copies) = elpv_cells(dir, 8);
    let first = dir.join(format!("{logistic}.hs"));
    train_small_bundle(&cells, &first, "fp32");
    let centroid = dir.join("centroid.hs");
    headstart_ok(&[
        "train",
        cells.to_str().unwrap(),
        "-o",
        centroid.to_str().unwrap(),
        "--head",
        "centroid",
        "-q",
    ]);
    (copies, first, centroid)
}

#[test]
fn serves_what_predict_answers_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (copies, defects, centroid) = two_heads(dir.path(), "defects");
    let questions = dir.path().join("questions.hs");
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/questions.csv");
    headstart_ok(&[
        "train",
        table.to_str().unwrap(),
        "-o",
        questions.to_str().unwrap(),
        "-q",
    ]);

    let server = Server::start(&[
        defects.to_str().unwrap(),
        centroid.to_str().unwrap(),
        "--name",
        &format!("router={}", questions.display()),
        "--max-body",
        "1",
    ]);
    let agent = client();
    let url = |path: &str| format!("{}{path}", server.url);

    let mut response = agent.get(url("/v1/models")).call().unwrap();
    let models: Value = response.body_mut().read_json().unwrap();
    let names: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["defects", "centroid", "router"]);
    assert_eq!(models["models"][2]["modality"], "text");
    assert_eq!(models["models"][1]["head"], "centroid");

    // One image as the raw body, as `predict` answers it.
    let images: Vec<&Path> = copies.iter().step_by(3).map(|p| p.as_path()).collect();
    let paths: Vec<&str> = images.iter().map(|p| p.to_str().unwrap()).collect();
    let by_cli = predict_json(&defects, &paths);
    let by_cli_images = by_cli.clone();
    let first = std::fs::read(images[0]).unwrap();
    let (status, answer) = post(
        &agent,
        &url("/v1/models/defects/predict?top_k=2"),
        "image/png",
        &first,
    );
    assert_eq!(status, 200, "{answer}");
    assert_same_answer(&answer["predictions"][0], &by_cli[0]);

    // Several images as base64 JSON, with a truncated one in the middle: one error entry in its place.
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut inputs: Vec<String> = images
        .iter()
        .map(|p| encode(&std::fs::read(p).unwrap()))
        .collect();
    inputs.insert(1, encode(&first[..first.len() / 2]));
    let (status, answer) = post_json(
        &agent,
        &url("/v1/models/defects/predict?top_k=2"),
        &json!({ "inputs": inputs }),
    );
    assert_eq!(status, 200, "{answer}");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), images.len() + 1);
    assert!(
        predictions[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("truncated"),
        "{}",
        predictions[1]
    );
    let decoded: Vec<&Value> = predictions
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, p)| p)
        .collect();
    for (served, cli) in decoded.iter().zip(&by_cli) {
        assert_same_answer(served, cli);
    }

    // Two heads over one embedding of each input answer as each does alone.
    let by_centroid = predict_json(&centroid, &paths);
    let (status, answer) = post_json(
        &agent,
        &url("/v1/predict?top_k=2"),
        &json!({ "models": ["defects", "centroid"], "inputs": inputs }),
    );
    assert_eq!(status, 200, "{answer}");
    let predictions = answer["predictions"].as_array().unwrap();
    assert!(predictions[1]["error"].is_string());
    let decoded: Vec<&Value> = predictions
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, p)| p)
        .collect();
    for ((served, defects_cli), centroid_cli) in decoded.iter().zip(&by_cli).zip(&by_centroid) {
        assert_same_answer(&served["models"]["defects"], defects_cli);
        assert_same_answer(&served["models"]["centroid"], centroid_cli);
    }

    // Texts, as JSON and as a plain body.
    let texts = [
        "where is my parcel?",
        "I was charged twice this month",
        "how do I change my password",
    ];
    let by_cli = predict_json(&questions, &texts);
    let (status, answer) = post_json(
        &agent,
        &url("/v1/models/router/predict?top_k=2"),
        &json!({ "inputs": texts }),
    );
    assert_eq!(status, 200, "{answer}");
    for (served, cli) in answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&by_cli)
    {
        assert_same_answer(served, cli);
    }
    let (status, answer) = post(
        &agent,
        &url("/v1/models/router/predict?top_k=2"),
        "text/plain",
        texts[0].as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_same_answer(&answer["predictions"][0], &by_cli[0]);

    // Several images as multipart parts, the truncated one among them.
    let parts: Vec<Vec<u8>> = vec![
        first.clone(),
        first[..first.len() / 2].to_vec(),
        std::fs::read(images[1]).unwrap(),
    ];
    let (status, answer) = post(
        &agent,
        &url("/v1/models/defects/predict?top_k=2"),
        "multipart/form-data; boundary=headstart-test",
        &multipart("headstart-test", &parts),
    );
    assert_eq!(status, 200, "{answer}");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3, "{answer}");
    assert_same_answer(&predictions[0], &by_cli_images[0]);
    assert!(predictions[1]["error"].is_string(), "{answer}");
    assert_same_answer(&predictions[2], &by_cli_images[1]);

    // Embeddings are the library's, for images and texts; OpenAI's route gives the texts' too.
    let mut library = headstart::Classifier::load(&defects, &Default::default(), None).unwrap();
    let expected = library
        .embed_paths(&[images[0].to_path_buf(), images[1].to_path_buf()])
        .unwrap();
    let (status, answer) = post(
        &agent,
        &url("/v1/models/centroid/embed"),
        "multipart/form-data; boundary=headstart-test",
        &multipart("headstart-test", &parts),
    );
    assert_eq!(status, 200, "{answer}");
    let embeddings = answer["embeddings"].as_array().unwrap();
    assert_close(&embeddings[0], expected.row(0).as_slice().unwrap());
    assert!(embeddings[1]["error"].is_string(), "{answer}");
    assert_close(&embeddings[2], expected.row(1).as_slice().unwrap());
    let mut library = headstart::Classifier::load(&questions, &Default::default(), None).unwrap();
    let expected = library.embed_texts(&texts).unwrap();
    let (status, answer) = post_json(
        &agent,
        &url("/v1/embeddings"),
        &json!({ "model": "router", "input": texts }),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "list");
    for (index, item) in answer["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(item["index"], index);
        assert_close(&item["embedding"], expected.row(index).as_slice().unwrap());
    }
    let (status, answer) = post_json(
        &agent,
        &url("/v1/embeddings"),
        &json!({ "model": "router", "input": texts[2], "encoding_format": "base64" }),
    );
    assert_eq!(status, 200, "{answer}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_close(&json!(values), expected.row(2).as_slice().unwrap());
    let (status, answer) = post_json(
        &agent,
        &url("/v1/embeddings"),
        &json!({ "model": "defects", "input": "a text" }),
    );
    assert_eq!(status, 400, "{answer}");

    // What the caller got wrong is a 4xx with a JSON reason, never a 500.
    let (status, answer) = post(
        &agent,
        &url("/v1/models/nothing/predict"),
        "image/png",
        &first,
    );
    assert_eq!(
        (status, answer["error"].as_str().unwrap()),
        (404, "no model named 'nothing' is served")
    );
    let (status, answer) = post_json(
        &agent,
        &url("/v1/models/defects/predict"),
        &json!({ "inputs": ["%%%"] }),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("not base64"),
        "{answer}"
    );
    let (status, answer) = post_json(
        &agent,
        &url("/v1/predict"),
        &json!({ "models": ["defects", "router"], "inputs": [] }),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("different backbones"),
        "{answer}"
    );
    let (status, answer) = post(
        &agent,
        &url("/v1/models/defects/predict?min_confidence=2"),
        "image/png",
        &first,
    );
    assert_eq!(status, 400, "{answer}");
    let oversized = vec![0u8; (1 << 20) + 1024];
    let (status, answer) = post(
        &agent,
        &url("/v1/models/defects/predict"),
        "image/png",
        &oversized,
    );
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].is_string());

    let (status, answer) = post(
        &agent,
        &url("/v1/models/defects/predict?top_k=many"),
        "image/png",
        &first,
    );
    assert_eq!(status, 400, "{answer}");

    // /metrics counts what was sent, by model and status.
    let metrics = agent
        .get(url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let value = |line: &str| -> f64 {
        let found = metrics
            .lines()
            .find(|l| l.starts_with(line))
            .unwrap_or_else(|| panic!("{line}:\n{metrics}"));
        found[line.len()..].trim().parse().unwrap()
    };
    assert_eq!(
        value("headstart_requests_total{route=\"predict\",model=\"defects\",status=\"200\"}"),
        3.0
    );
    assert_eq!(
        value("headstart_requests_total{route=\"predict\",model=\"defects\",status=\"400\"}"),
        3.0
    );
    assert_eq!(
        value("headstart_requests_total{route=\"predict\",model=\"defects\",status=\"413\"}"),
        1.0
    );
    assert_eq!(
        value("headstart_requests_total{route=\"predict\",model=\"nothing\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        value("headstart_requests_total{route=\"predict\",model=\"router\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        value(
            "headstart_requests_total{route=\"predict\",model=\"defects+centroid\",status=\"200\"}"
        ),
        1.0
    );
    // Predicted: one raw image, the JSON images twice (one head, two heads), the texts as JSON and plain, the
    // multipart images; embedded: the multipart images, the texts and one text in base64.
    let predicted = 1 + 2 * (images.len() + 1) + texts.len() + 1 + parts.len();
    let embedded = parts.len() + texts.len() + 1;
    assert_eq!(
        value("headstart_inputs_total"),
        (predicted + embedded) as f64
    );
    assert_eq!(value("headstart_batch_inputs_count"), 9.0);
    assert_eq!(
        value("headstart_requests_total{route=\"embeddings\",model=\"router\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        value("headstart_requests_total{route=\"embed\",model=\"centroid\",status=\"200\"}"),
        1.0
    );
    assert_eq!(value("headstart_queue_waiting"), 0.0);

    let status = server.stop();
    assert!(status.success(), "{status:?}");

    // With a key, only /health and /ready answer without it.
    let busy = Server::start(&[
        defects.to_str().unwrap(),
        "--max-queue",
        "1",
        "--max-batch",
        "1",
        "--api-key",
        "s3cret",
    ]);
    let status = |path: &str, key: Option<&str>| {
        let mut request = agent.get(format!("{}{path}", busy.url));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request.call().unwrap().status().as_u16()
    };
    assert_eq!(status("/health", None), 200);
    assert_eq!(status("/ready", None), 200);
    assert_eq!(status("/v1/models", None), 401);
    assert_eq!(status("/v1/models", Some("wrong")), 401);
    assert_eq!(status("/v1/models", Some("s3cret")), 200);

    // A full queue refuses with 429 and Retry-After; what it took is answered.
    let request = json!({ "inputs": inputs });
    let statuses: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..24)
            .map(|_| {
                scope.spawn(|| {
                    let mut response = client()
                        .post(format!("{}/v1/models/defects/predict", busy.url))
                        .header("content-type", "application/json")
                        .header("authorization", "Bearer s3cret")
                        .send(request.to_string().as_bytes())
                        .unwrap();
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    let _ = response.body_mut().read_to_string();
                    (response.status().as_u16(), retry)
                })
            })
            .collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    });
    let refused = statuses.iter().filter(|(status, _)| *status == 429).count();
    assert!(refused > 0, "{statuses:?}");
    for (status, retry) in &statuses {
        match status {
            200 => {}
            429 => assert_eq!(retry.as_deref(), Some("1")),
            other => panic!("{other}: {statuses:?}"),
        }
    }
    assert!(busy.stop().success());
}

/// What clients under load saw: per request, when it was sent, when its answer (or failure) came, and what.
struct Seen {
    sent: Instant,
    done: Instant,
    outcome: Result<(u16, String), String>,
}

/// `clients` threads asking `url` for one image's answer, again and again, until `stop` is set or a request
/// fails to connect after it.
fn load(url: &str, image: &[u8], clients: usize, stop: &AtomicBool) -> Vec<Seen> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let agent = client();
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let sent = Instant::now();
                        let outcome = agent
                            .post(url)
                            .header("content-type", "image/png")
                            .send(image)
                            .map_err(|e| e.to_string())
                            .and_then(|mut response| {
                                let status = response.status().as_u16();
                                let body = response.body_mut().read_to_string();
                                body.map(|body| (status, body)).map_err(|e| e.to_string())
                            });
                        let failed = outcome.is_err();
                        seen.push(Seen {
                            sent,
                            done: Instant::now(),
                            outcome,
                        });
                        if failed {
                            break;
                        }
                    }
                    seen
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect()
    })
}

/// The head answering as `name`, from /v1/models.
fn served_head(agent: &ureq::Agent, url: &str, name: &str) -> String {
    let mut response = agent.get(format!("{url}/v1/models")).call().unwrap();
    let models: Value = response.body_mut().read_json().unwrap();
    let model = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap()
        .clone();
    model["head"].as_str().unwrap().to_string()
}

/// Replaces `path` with `bytes` as a deploy would: written beside it, then renamed over it.
fn replace_file(path: &Path, bytes: &[u8]) {
    let beside = path.with_extension("partial");
    std::fs::write(&beside, bytes).unwrap();
    std::fs::rename(&beside, path).unwrap();
}

#[test]
fn reloads_and_stops_under_load_without_dropping_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let (copies, logistic, centroid) = two_heads(dir.path(), "logistic");
    let live = dir.path().join("live.hs");
    std::fs::copy(&logistic, &live).unwrap();
    let server = Server::start(&[live.to_str().unwrap(), "--max-wait-ms", "5", "-v"]);
    let agent = client();
    let image = std::fs::read(&copies[0]).unwrap();
    let predict = format!("{}/v1/models/live/predict", server.url);
    assert_eq!(served_head(&agent, &server.url, "live"), "logistic");

    // Under load: a new bundle by SIGHUP, a broken file by SIGHUP and by the route (the new one keeps
    // serving), then the first bundle again by the route. Every request is answered 200.
    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let clients = scope.spawn(|| load(&predict, &image, 4, &stop));
        std::thread::sleep(Duration::from_millis(300));
        replace_file(&live, &std::fs::read(&centroid).unwrap());
        server.signal("HUP");
        server.printed_line("reloaded live from");
        assert_eq!(served_head(&agent, &server.url, "live"), "centroid");

        let whole = std::fs::read(&logistic).unwrap();
        replace_file(&live, &whole[..whole.len() / 2]);
        server.signal("HUP");
        let kept = server.printed_line("kept the live loaded before");
        assert!(kept.contains("live.hs"), "{kept}");
        let reload = format!("{}/v1/models/live/reload", server.url);
        let (status, answer) = post(&agent, &reload, "application/json", b"");
        assert_eq!(status, 422, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("goes on serving"),
            "{answer}"
        );
        assert_eq!(served_head(&agent, &server.url, "live"), "centroid");

        replace_file(&live, &whole);
        let (status, answer) = post(&agent, &reload, "application/json", b"");
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["reloaded"]["head"], "logistic");
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        clients.join().unwrap()
    });
    assert!(seen.len() > 20, "{} requests", seen.len());
    for request in &seen {
        match &request.outcome {
            Ok((200, _)) => {}
            other => panic!("{other:?}"),
        }
    }
    let (status, answer) = post(
        &agent,
        &format!("{}/v1/models/nothing/reload", server.url),
        "application/json",
        b"",
    );
    assert_eq!(status, 404, "{answer}");
    // -v: one line per request.
    server.printed_line("POST /v1/models/live/predict 200 ");

    // SIGTERM under load: every request the server took is answered 200, and it exits 0. Requests after it
    // stopped taking connections fail to connect, which clients see as an error, not as an answer.
    let stop = AtomicBool::new(false);
    let mut signalled = None;
    let (seen, status) = std::thread::scope(|scope| {
        let clients = scope.spawn(|| load(&predict, &image, 8, &stop));
        std::thread::sleep(Duration::from_millis(500));
        signalled = Some(Instant::now());
        let status = server.stop();
        stop.store(true, Ordering::SeqCst);
        (clients.join().unwrap(), status)
    });
    assert!(status.success(), "{status:?}");
    let signalled = signalled.unwrap();
    let mut answered_across = 0;
    for request in &seen {
        match &request.outcome {
            Ok((200, _)) if request.sent < signalled && request.done > signalled => {
                answered_across += 1
            }
            Ok((200, _)) => {}
            Ok(other) => panic!("{other:?}"),
            Err(why) => assert!(request.sent >= signalled, "failed before SIGTERM: {why}"),
        }
    }
    assert!(answered_across > 0, "no request was in flight at SIGTERM");

    // --timeout: a request not answered in time is a 503 with Retry-After.
    let hasty = Server::start(&[live.to_str().unwrap(), "--timeout", "0.000001"]);
    let mut response = client()
        .post(format!("{}/v1/models/live/predict", hasty.url))
        .header("content-type", "image/png")
        .send(&image[..])
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers().get("retry-after").unwrap(), "1");
    let _ = response.body_mut().read_to_string();
    assert!(hasty.stop().success());
}

/// A request's status and JSON answer, or why none came.
type Outcome = Result<(u16, Value), String>;

/// Resident and peak resident memory of `pid`, in MiB (Linux: /proc/PID/status).
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kib: f64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kib / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// 20,000 requests (HEADSTART_LOAD_REQUESTS) from 64 clients, a few hundred of them corrupt images or bodies
/// over the limit: every valid one is answered with a label, every corrupt one with an error entry, every
/// oversized one with 413 (or its connection closed while it was still sending), and memory stays flat.
#[test]
fn answers_every_valid_request_of_a_long_load() {
    let total: usize = std::env::var("HEADSTART_LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    // Memory is sampled every 2,000 requests; the first sample after warm-up is the one compared with the end.
    const EVERY: usize = 2_000;
    assert!(total >= 2 * EVERY, "at least {} requests", 2 * EVERY);
    let clients = 64;
    let dir = tempfile::tempdir().unwrap();
    let (cells, copies) = elpv_cells(dir.path(), 8);
    let bundle = dir.path().join("defects.hs");
    train_small_bundle(&cells, &bundle, "fp32");
    let server = Server::start(&[bundle.to_str().unwrap(), "--max-body", "1"]);
    let url = format!("{}/v1/models/defects/predict", server.url);
    let images: Vec<Vec<u8>> = copies.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let corrupt = {
        let mut bytes = images[0].clone();
        bytes.truncate(bytes.len() / 3);
        bytes
    };
    let oversized = vec![7u8; (1 << 20) + (1 << 19)];
    // Every 50th request is corrupt, every 97th oversized.
    let kind = |i: usize| match (i % 50, i % 97) {
        (_, 0) => "oversized",
        (0, _) => "corrupt",
        _ => "valid",
    };
    let next = AtomicUsize::new(0);
    let samples = Mutex::new(Vec::new());
    let pid = server.pid();
    let outcomes: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    let agent = client();
                    let mut outcomes = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break outcomes;
                        }
                        if i.is_multiple_of(EVERY) {
                            samples.lock().unwrap().push((i, memory_mib(pid)));
                        }
                        let body: &[u8] = match kind(i) {
                            "oversized" => &oversized,
                            "corrupt" => &corrupt,
                            _ => &images[i % images.len()],
                        };
                        let outcome = agent
                            .post(&url)
                            .header("content-type", "image/png")
                            .send(body)
                            .map_err(|e| e.to_string())
                            .and_then(|mut response| {
                                let status = response.status().as_u16();
                                let text = response.body_mut().read_to_string();
                                let text = text.map_err(|e| e.to_string())?;
                                let value =
                                    serde_json::from_str(&text).map_err(|e| e.to_string())?;
                                Ok((status, value))
                            });
                        outcomes.push((i, outcome));
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    assert_eq!(outcomes.len(), total);
    let mut counts = std::collections::BTreeMap::new();
    for (i, outcome) in &outcomes {
        let kind = kind(*i);
        *counts.entry(kind).or_insert(0) += 1;
        match (kind, outcome) {
            ("valid", Ok((200, answer))) => {
                assert!(answer["predictions"][0]["label"].is_string(), "{answer}")
            }
            ("corrupt", Ok((200, answer))) => {
                assert!(answer["predictions"][0]["error"].is_string(), "{answer}")
            }
            ("oversized", Ok((413, _)) | Err(_)) => {}
            (kind, other) => panic!("request {i} ({kind}): {other:?}"),
        }
    }
    let mut samples = samples.into_inner().unwrap();
    samples.sort_by_key(|(i, _)| *i);
    let (settled, _) = samples[1].1;
    let (resident, peak) = memory_mib(pid);
    eprintln!(
        "{total} requests from {clients} clients ({counts:?}): resident MiB by request {:?}, at the end {resident:.0}, peak {peak:.0}",
        samples
            .iter()
            .map(|(i, (rss, _))| (*i, rss.round()))
            .collect::<Vec<_>>()
    );
    // Flat: what it holds at the end is near what it held once warm.
    assert!(
        resident < settled * 1.5 + 64.0,
        "{settled} MiB then {resident} MiB"
    );
    assert!(server.stop().success());
}
