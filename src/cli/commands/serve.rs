//! `headstart serve`: bundles behind an HTTP API; bundles on the same backbone share its runs.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use headstart::classifier::{Service, ServiceOptions};
use headstart::runtime::RuntimeOptions;

use crate::cli::failure::{Outcome, usage};
use crate::cli::http::{self, Settings};

#[derive(Args)]
pub struct ServeArgs {
    /// Bundles to serve, each under its file stem
    #[arg(value_name = "BUNDLE.hs", required_unless_present = "name")]
    pub bundles: Vec<PathBuf>,
    /// A bundle served under another name (repeatable)
    #[arg(long, value_name = "NAME=PATH")]
    pub name: Vec<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// 0 takes a free port (the address is printed)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The most inputs in one backbone run [default: 8 on the CPU, 256 on CUDA]
    #[arg(long, value_name = "N")]
    pub max_batch: Option<usize>,
    /// How long a backbone with inputs waits for more before it runs (0: it runs whenever it is free, and what
    /// arrives meanwhile forms the next batch)
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub max_wait_ms: u64,
    /// Requests waiting per backbone; beyond it requests are refused with 429
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Requests answered at once; more are refused with 429
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_concurrent: usize,
    /// Seconds a request may take before it is answered 503 (0: no limit)
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub timeout: f64,
    /// The largest request body, in MiB (413 beyond it)
    #[arg(long, value_name = "MIB", default_value_t = 16)]
    pub max_body: usize,
    /// A bearer key every route but /health, /ready and /metrics asks for (401 without it)
    #[arg(
        long,
        value_name = "KEY",
        env = "HEADSTART_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// One line per request on standard error (method, path, status, milliseconds)
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn run(args: &ServeArgs, runtime: RuntimeOptions) -> Outcome {
    let mut bundles: Vec<(String, PathBuf)> = Vec::new();
    for path in &args.bundles {
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            return Err(usage(format!(
                "{} has no name to serve it under: use --name NAME=PATH",
                path.display()
            )));
        };
        bundles.push((stem.to_string(), path.clone()));
    }
    for named in &args.name {
        let Some((name, path)) = named
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        else {
            return Err(usage(format!("--name takes NAME=PATH, not '{named}'")));
        };
        bundles.push((name.to_string(), PathBuf::from(path)));
    }
    if args.max_concurrent == 0 {
        return Err(usage("--max-concurrent must be at least 1"));
    }
    let timeout = match args.timeout {
        0.0 => None,
        seconds => Some(
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| usage(format!("--timeout takes seconds, not {seconds}")))?,
        ),
    };
    let mut options = ServiceOptions::default()
        .max_wait(Duration::from_millis(args.max_wait_ms))
        .max_queue(args.max_queue)
        .runtime(runtime);
    if let Some(max_batch) = args.max_batch {
        options = options.max_batch(max_batch);
    }
    let service = Service::open(&bundles, &options)?;
    let settings = Settings {
        address: SocketAddr::new(args.host, args.port),
        max_body: args.max_body.saturating_mul(1 << 20),
        max_concurrent: args.max_concurrent,
        timeout,
        api_key: args.api_key.clone(),
        access_log: args.verbose,
    };
    let names: Vec<&str> = bundles.iter().map(|(name, _)| name.as_str()).collect();
    http::serve(service, settings, |address| {
        eprintln!("serving {} on http://{address}", names.join(", "));
    })
    .map_err(|e| usage(format!("cannot serve on {}:{}: {e}", args.host, args.port)))
}
