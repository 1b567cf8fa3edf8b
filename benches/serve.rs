//! `headstart serve` under load, side by side in one run on the same ELPV cells and the same trained bundle:
//! (a) the pipeline's ceiling: the same images through `headstart embed`'s pipeline (decode + preprocess +
//!     inference, no cache), images/s;
//! (b) one image at a time: decode + preprocess + one batch-1 inference, median ms (the floor of a lone request);
//! (c) `headstart serve` with one image per request (the raw body), C = 1, 8, 64 requests kept in flight:
//!     requests/s, p50 and p99 latency;
//! (d) the server a Python user would write (benches/reference_serve.py: FastAPI + uvicorn + onnxruntime +
//!     Pillow + numpy, the same backbone file and the same logistic head's weights), the same load;
//! (e) four bundles on one backbone: `/v1/predict` over all four against `/v1/models/{name}/predict` over one,
//!     the same base64 JSON body, C = 64.
//! Servers take turns, level by level, for `HEADSTART_BENCH_ROUNDS` rounds; medians are printed.
//!
//! cargo bench --bench serve
//!   HEADSTART_BENCH_IMAGES=N     ELPV images sent (256)
//!   HEADSTART_BENCH_REQUESTS=N   requests per level and server (512)
//!   HEADSTART_BENCH_ROUNDS=N     rounds (2)
//!   HEADSTART_BENCH_MAX_BATCH=N  serve's --max-batch (its default: the device's batch)

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone};
use headstart::bundle::Bundle;
use headstart::data::files as dataset;
use headstart::embeddings::{EmbedOptions, embed_images};
use headstart::head::Head;
use headstart::{Classifier, datasets, zoo};
use serde_json::json;

mod common;

const LEVELS: [usize; 3] = [1, 8, 64];

fn main() {
    let count = env_number("HEADSTART_BENCH_IMAGES", 256);
    let requests = env_number("HEADSTART_BENCH_REQUESTS", 512);
    let rounds = env_number("HEADSTART_BENCH_ROUNDS", 2);
    let work = tempfile::tempdir().expect("temp dir");
    let (images, training) = elpv_sets(work.path(), count);
    let bodies: Vec<Vec<u8>> = images
        .iter()
        .map(|p| std::fs::read(p).expect("image"))
        .collect();

    let bundles: Vec<(String, PathBuf)> = ["logistic", "centroid", "knn", "linear-svm"]
        .iter()
        .map(|head| {
            let path = work.path().join(format!("{head}.hs"));
            headstart(&[
                "train",
                training.to_str().expect("path"),
                "-o",
                path.to_str().expect("path"),
                "--head",
                head,
                "-q",
            ]);
            (head.to_string(), path)
        })
        .collect();
    let logistic = &bundles[0].1;

    let ceiling = embed_ceiling(&images);
    let lone = lone_image_ms(logistic, &images);
    let head_json = work.path().join("head.json");
    write_head_json(logistic, &head_json);
    let model = zoo::onnx_path(&zoo::find("efficientnet-lite0").expect("zoo entry"))
        .expect("default backbone");

    let mut served: Vec<Vec<Load>> = vec![Vec::new(); LEVELS.len()];
    let mut python: Vec<Vec<Load>> = vec![Vec::new(); LEVELS.len()];
    let mut python_error = None;
    let (mut four, mut one) = (Vec::new(), Vec::new());
    let encoded: Vec<Vec<u8>> = bodies
        .iter()
        .map(|b| {
            base64::engine::general_purpose::STANDARD
                .encode(b)
                .into_bytes()
        })
        .collect();
    let json_body = |models: Option<&[&str]>, image: &[u8]| -> Vec<u8> {
        let image = String::from_utf8_lossy(image);
        match models {
            Some(models) => json!({"models": models, "inputs": [image]}),
            None => json!({"inputs": [image]}),
        }
        .to_string()
        .into_bytes()
    };
    let names: Vec<&str> = bundles.iter().map(|(name, _)| name.as_str()).collect();
    let four_bodies: Vec<Vec<u8>> = encoded.iter().map(|b| json_body(Some(&names), b)).collect();
    let one_bodies: Vec<Vec<u8>> = encoded.iter().map(|b| json_body(None, b)).collect();

    let named: Vec<String> = bundles
        .iter()
        .flat_map(|(name, path)| ["--name".to_string(), format!("{name}={}", path.display())])
        .collect();
    for _ in 0..rounds {
        let server = Server::headstart(&[logistic.to_str().expect("path")]);
        let url = format!("{}/v1/models/logistic/predict", server.url);
        for (level, clients) in LEVELS.iter().enumerate() {
            served[level].push(load(&url, "image/png", &bodies, *clients, requests));
        }
        drop(server);
        match Server::python(&model, &head_json) {
            Ok(server) => {
                let url = format!("{}/predict", server.url);
                for (level, clients) in LEVELS.iter().enumerate() {
                    python[level].push(load(&url, "image/png", &bodies, *clients, requests));
                }
            }
            Err(why) => python_error = Some(why),
        }
        let server = Server::headstart(&named.iter().map(String::as_str).collect::<Vec<_>>());
        let many = format!("{}/v1/predict", server.url);
        let single = format!("{}/v1/models/logistic/predict", server.url);
        four.push(load(&many, "application/json", &four_bodies, 64, requests).per_second);
        one.push(load(&single, "application/json", &one_bodies, 64, requests).per_second);
    }

    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!(
        "\n## headstart serve, ELPV cells (300x300 PNG), {} images, {requests} requests per level, {rounds} rounds, {cores} cores\n",
        images.len()
    );
    println!("(a) embed pipeline ceiling: {ceiling:.1} images/s");
    println!(
        "(b) one image alone (decode + preprocess + batch-1 inference): {lone:.1} ms median\n"
    );
    println!(
        "| C | (c) serve req/s | p50 ms | p99 ms | (c)/(a) | (d) FastAPI req/s | p50 ms | p99 ms | (c)/(d) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (level, clients) in LEVELS.iter().enumerate() {
        let ours = Load::median(&served[level]);
        let line = match python_error.as_deref() {
            None => {
                let theirs = Load::median(&python[level]);
                format!(
                    "{:.1} | {:.1} | {:.1} | {:.2}x",
                    theirs.per_second,
                    theirs.p50,
                    theirs.p99,
                    ours.per_second / theirs.per_second
                )
            }
            Some(why) => format!("not run: {why} | | |"),
        };
        println!(
            "| {clients} | {:.1} | {:.1} | {:.1} | {:.2} | {line} |",
            ours.per_second,
            ours.p50,
            ours.p99,
            ours.per_second / ceiling
        );
    }
    let (four, one) = (common::median(four), common::median(one));
    println!(
        "\n(e) C = 64, base64 JSON: four heads on one backbone {four:.1} req/s, one head {one:.1} req/s: four cost {:.2}x one",
        one / four
    );
    println!(
        "C = 1: serve's p50 is {:.2}x one image alone",
        Load::median(&served[0]).p50 / lone
    );
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn headstart(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_headstart"))
        .args(args)
        .output()
        .expect("headstart runs");
    assert!(
        output.status.success(),
        "headstart {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `count` ELPV cells to send (a flat list) and a separate small class-folder set to train on.
fn elpv_sets(work: &Path, count: usize) -> (Vec<PathBuf>, PathBuf) {
    let source = datasets::elpv_by_defect().expect("ELPV fetch");
    let training = work.join("training");
    let mut images = Vec::new();
    for class in ["defective", "functional"] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(source.join(class))
            .expect("class folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        std::fs::create_dir_all(training.join(class)).expect("folder");
        for path in entries.iter().take(40) {
            let name = path.file_name().expect("file name");
            std::fs::copy(path, training.join(class).join(name)).expect("copy");
        }
        images.extend(entries.into_iter().skip(40).take(count / 2));
    }
    (images, training)
}

/// Images/s of `headstart embed`'s pipeline over `images` (no cache), after one warm-up pass.
fn embed_ceiling(images: &[PathBuf]) -> f64 {
    let folder = tempfile::tempdir().expect("temp dir");
    for path in images {
        let name = path.file_name().expect("file name");
        std::fs::copy(path, folder.path().join(name)).expect("copy");
    }
    let data = dataset::scan(folder.path()).expect("scan");
    let reference = BackboneRef::Zoo("efficientnet-lite0".into());
    let mut backbone =
        ImageBackbone::open(&reference, &BackboneOptions::default()).expect("backbone opens");
    let options = EmbedOptions::default().use_cache(false);
    let rates: Vec<f64> = (0..3)
        .map(|_| {
            let (_, summary) =
                embed_images(&data, &mut backbone, &options, &mut |_, _| {}).expect("embed");
            summary.per_second
        })
        .collect();
    common::median(rates[1..].to_vec())
}

/// Median milliseconds to decode, preprocess and embed one image alone, through the bundle's classifier.
fn lone_image_ms(bundle: &Path, images: &[PathBuf]) -> f64 {
    let mut classifier = Classifier::load(bundle, &Default::default(), None).expect("bundle");
    let times: Vec<f64> = images
        .iter()
        .take(64)
        .map(|path| {
            let started = Instant::now();
            classifier
                .embed_paths(std::slice::from_ref(path))
                .expect("embed");
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    common::median(times[4..].to_vec())
}

/// The logistic head's weights as benches/reference_serve.py reads them.
fn write_head_json(bundle: &Path, out: &Path) {
    let bundle = Bundle::load(bundle).expect("bundle");
    let Head::Logistic(model) = &bundle.head else {
        panic!("a logistic head expected");
    };
    let identity = &bundle.info.features.backbone;
    let weights: Vec<Vec<f32>> = model
        .weights
        .rows()
        .into_iter()
        .map(|r| r.to_vec())
        .collect();
    let head = json!({
        "output": identity.output,
        "normalize": identity.normalize,
        "classes": bundle.info.class_names,
        "mean": model.scaler.mean.to_vec(),
        "scale": model.scaler.scale.to_vec(),
        "weights": weights,
        "intercept": model.intercept.to_vec(),
    });
    std::fs::write(out, head.to_string()).expect("head json");
}

/// What one level of load gave.
#[derive(Clone, Copy)]
struct Load {
    per_second: f64,
    p50: f64,
    p99: f64,
}

impl Load {
    fn median(loads: &[Load]) -> Load {
        let pick = |f: fn(&Load) -> f64| common::median(loads.iter().map(f).collect());
        Load {
            per_second: pick(|l| l.per_second),
            p50: pick(|l| l.p50),
            p99: pick(|l| l.p99),
        }
    }
}

/// `total` requests from `clients` threads that each keep one in flight (keep-alive connections), the bodies
/// taken in turn; after a warm-up of one round per client. Every answer must be 200.
fn load(url: &str, content_type: &str, bodies: &[Vec<u8>], clients: usize, total: usize) -> Load {
    let send = |agent: &ureq::Agent, body: &[u8]| {
        let mut response = agent
            .post(url)
            .header("content-type", content_type)
            .send(body)
            .expect("request");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("answer");
        assert_eq!(status, 200, "{text}");
    };
    let next = AtomicUsize::new(0);
    let agents: Vec<ureq::Agent> = (0..clients)
        .map(|_| ureq::Agent::new_with_defaults())
        .collect();
    let (latencies, took) = std::thread::scope(|scope| {
        let warm: Vec<_> = agents
            .iter()
            .enumerate()
            .map(|(i, agent)| scope.spawn(move || send(agent, &bodies[i % bodies.len()])))
            .collect();
        warm.into_iter().for_each(|t| t.join().expect("warm-up"));
        let started = Instant::now();
        let threads: Vec<_> = agents
            .iter()
            .map(|agent| {
                let next = &next;
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break latencies;
                        }
                        let sent = Instant::now();
                        send(agent, &bodies[i % bodies.len()]);
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                })
            })
            .collect();
        let latencies: Vec<f64> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("client"))
            .collect();
        (latencies, started.elapsed())
    });
    let mut sorted = latencies;
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    Load {
        per_second: total as f64 / took.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn headstart(args: &[&str]) -> Server {
        let max_batch = std::env::var("HEADSTART_BENCH_MAX_BATCH").ok();
        let mut child = Command::new(env!("CARGO_BIN_EXE_headstart"))
            .arg("serve")
            .args(args)
            .args(max_batch.iter().flat_map(|n| ["--max-batch", n.as_str()]))
            .args(["--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("headstart serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let line = lines.next().expect("a line").expect("text");
        assert!(line.starts_with("serving "), "{line}");
        let address = line.rsplit("http://").next().expect("address").to_string();
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            url: format!("http://{address}"),
        }
    }

    /// benches/reference_serve.py on a free port, once it answers.
    fn python(model: &Path, head: &Path) -> Result<Server, String> {
        let site = headstart::home::python_packages(
            "python-serve-bench",
            "numpy, PIL, onnxruntime, fastapi, uvicorn",
            &[
                "numpy",
                "pillow",
                "onnxruntime==1.31.1",
                "fastapi==0.163.2",
                "uvicorn==0.54.0",
            ],
        )
        .map_err(|e| e.to_string())?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference_serve.py");
        let child = Command::new(headstart::home::python())
            .envs(site.iter().map(|p| ("PYTHONPATH", p)))
            .arg(script)
            .arg(model)
            .arg(head)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("the FastAPI server did not start in 30 s".into())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
