//! `headstart cache`: where the cache is, what it holds, and `cache clear`.

use clap::{Args, Subcommand};

use crate::cli::failure::Outcome;
use crate::cli::print::megabytes;

#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: Option<CacheCommand>,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
}

pub fn run(args: CacheArgs) -> Outcome {
    match args.action {
        None => show_cache(args.json),
        Some(CacheCommand::Clear { all }) => clear_cache(all, args.json),
    }
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Remove the embedding cache (embeddings are recomputed on the next run)
    Clear {
        /// Also remove what was fetched: the folders models, datasets, runtime, samples and python… (fetched
        /// again when needed); anything else there is left alone
        #[arg(long)]
        all: bool,
    },
}

fn show_cache(json: bool) -> Outcome {
    let root = headstart::home::home()?;
    let parts = headstart::home::usage(&root)?;
    let embeddings = headstart::embeddings::cache::usage(&root.join("embeddings"))?;
    if json {
        let value = serde_json::json!({ "root": root, "parts": parts, "embeddings": embeddings });
        println!("{value}");
        return Ok(());
    }
    println!(
        "cache {} (HEADSTART_HOME moves it; `headstart cache clear` empties it)",
        root.display()
    );
    for part in &parts {
        println!(
            "{:<18} {:>10} files {:>11}",
            part.name,
            part.files,
            megabytes(part.bytes)
        );
        if part.name == "embeddings" {
            for configuration in &embeddings {
                println!(
                    "    {:>10} entries {:>11}  {}",
                    configuration.entries,
                    megabytes(configuration.bytes),
                    configuration
                        .description
                        .as_deref()
                        .unwrap_or("(configuration not recorded)")
                );
            }
        }
    }
    let total: u64 = parts.iter().map(|p| p.bytes).sum();
    println!("{:<18} {:>10}       {:>11}", "total", "", megabytes(total));
    Ok(())
}

fn clear_cache(everything: bool, json: bool) -> Outcome {
    let root = headstart::home::home()?;
    let cleared = headstart::home::clear(&root, everything)?;
    if json {
        println!("{}", serde_json::to_string(&cleared).unwrap_or_default());
        return Ok(());
    }
    if cleared.removed.is_empty() {
        println!("nothing to remove in {}", root.display());
    }
    for part in &cleared.removed {
        println!(
            "removed {} ({} files, {})",
            root.join(&part.name).display(),
            part.files,
            megabytes(part.bytes)
        );
    }
    if !cleared.left_alone.is_empty() {
        // Folders from before markers were written are headstart's too, but cannot be told from the user's.
        println!(
            "left alone (no {} marker: not made by this headstart; delete them yourself if they are a cache): {}",
            headstart::home::MARKER,
            cleared.left_alone.join(", ")
        );
    }
    Ok(())
}
