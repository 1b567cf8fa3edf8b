//! `headstart models`: the zoo's backbones, listed or fetched.

use crate::cli::failure::Outcome;
use clap::Subcommand;
use headstart::{Result, zoo};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List the zoo's backbones, their sources and licences, and whether they are cached
    List,
    /// Fetch (or convert) backbones into the cache now instead of on first use
    Fetch {
        /// Zoo names; `all` fetches every one
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn list_models() -> Outcome {
    for model in zoo::models() {
        let default = if model.default { " (default)" } else { "" };
        println!(
            "{}{default}  [{}]  {}",
            model.name, model.modality, model.description
        );
        println!("    source   {}", model.onnx.origin());
        println!("    sha256   {}", model.onnx.sha256());
        let pooling = serde_json::to_value(model.pooling).unwrap_or_default();
        println!(
            "    features output '{}', pooling {}",
            model.output,
            pooling.as_str().unwrap_or("auto")
        );
        if let Some(p) = &model.preprocess {
            println!("    input    {}", p.describe());
        }
        if let Some(t) = &model.text {
            println!(
                "    input    tokenizer {} (max {} tokens)",
                t.tokenizer.package, t.max_length
            );
        }
        println!("    licence  {}", model.licence);
    }
    Ok(())
}

pub fn run(command: ModelsCommand) -> Outcome {
    match command {
        ModelsCommand::List => list_models(),
        ModelsCommand::Fetch { names } => {
            let wanted: Vec<zoo::ZooModel> = if names.iter().any(|n| n == "all") {
                zoo::models()
            } else {
                names.iter().map(|n| zoo::find(n)).collect::<Result<_>>()?
            };
            for model in wanted {
                let path = zoo::fetch_all(&model)?;
                println!("{}\t{}", model.name, path.display());
            }
            Ok(())
        }
    }
}
