//! `headstart studio`: the whole loop over a dataset folder in a browser (see and fix the data, train, try it,
//! take the bundle), served on this machine only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use headstart::data::{Data, DatasetFolder, TextTable, texts};
use headstart::runtime::RuntimeOptions;

use crate::cli::failure::{Outcome, usage};
use crate::cli::flags::{BackboneArgs, TextFlags};
use crate::cli::http::studio::{Dataset, StudioSettings, studio};

#[derive(Args)]
pub struct StudioArgs {
    /// A folder with one sub-folder per class, of images or of .txt files (made if it does not exist), or a
    /// text table (.csv, .tsv, .jsonl; made by the first rows added)
    pub dataset: PathBuf,
    /// 0 takes a free port
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// The address to listen on; other machines (and other users of them) reach a studio on anything but
    /// 127.0.0.1 with its token alone
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub host: IpAddr,
    /// Open the studio in the default browser
    #[arg(long)]
    pub open: bool,
    /// One line per request on standard error (method, path, status, milliseconds)
    #[arg(long, short)]
    pub verbose: bool,
    #[command(flatten)]
    pub backbone: BackboneArgs,
    #[command(flatten)]
    pub text: TextFlags,
}

pub fn run(args: &StudioArgs, runtime: RuntimeOptions) -> Outcome {
    let dataset = if texts::is_table(&args.dataset) {
        Dataset::Texts(TextTable::open(&args.dataset, args.text.options())?)
    } else if args.dataset.is_file() {
        return Err(usage(format!(
            "{} is a file: the studio opens a folder with one sub-folder per class, or a text table \
             (.csv, .tsv, .jsonl)",
            args.dataset.display()
        )));
    } else {
        let folder = DatasetFolder::open(&args.dataset)?;
        match Data::open(folder.root(), &args.text.options())? {
            Data::Texts(_) => Dataset::TextFolder(folder),
            _ => Dataset::Images(folder),
        }
    };
    let settings = StudioSettings {
        address: SocketAddr::new(args.host, args.port),
        backbone: args.backbone.given(),
        options: args
            .backbone
            .options(runtime, args.text.tokenizer.clone())?,
        access_log: args.verbose,
    };
    let open = args.open;
    studio(dataset, settings, |address, token| {
        // Listening everywhere includes this machine: the address to open here is its loopback.
        let host = match address.ip() {
            IpAddr::V4(ip) if ip.is_loopback() || ip.is_unspecified() => {
                format!("127.0.0.1:{}", address.port())
            }
            IpAddr::V6(ip) if ip.is_unspecified() => format!("[::1]:{}", address.port()),
            _ => address.to_string(),
        };
        let url = format!("http://{host}/?token={token}");
        eprintln!("headstart studio on {url}");
        if open {
            open_in_browser(&url);
        }
    })
    .map_err(|e| usage(format!("cannot listen on {}:{}: {e}", args.host, args.port)))
}

/// Asks the desktop to open `url`; says so when there is no way to.
fn open_in_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if std::process::Command::new(opener).arg(url).spawn().is_err() {
        eprintln!("could not start {opener}: open the address above in a browser");
    }
}
