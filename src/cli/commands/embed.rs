//! `headstart embed`: a data set into an .npz or Parquet shards, or files and texts as JSON lines.

use std::path::{Path, PathBuf};

use clap::Args;
use headstart::backbone::{BackboneOptions, BackboneRef};
use headstart::data::{Data, Shard, files, texts};
use headstart::embeddings::{EmbedSummary, EmbeddedSet};
use headstart::runtime::RuntimeOptions;
use headstart::workflow::{self, ParquetShard};
use headstart::{Error, Modality, Result};

use crate::cli::failure::{Outcome, usage};
use crate::cli::flags::{BackboneArgs, EmbedFlags, TextFlags};
use crate::cli::print::print_embed_summary;

#[derive(Args)]
pub struct EmbedArgs {
    /// A folder (one sub-folder per class, or flat; .txt files make it texts), a text table (.csv, .tsv,
    /// .jsonl), image files, or texts with --text
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// The .npz to write when embedding a folder or a table; with --format parquet, the folder for its shards
    #[arg(long, short, value_name = "OUT")]
    pub output_file: Option<PathBuf>,
    /// npz: one file of the embedded rows; parquet: OUT/part-K-of-N.parquet with one row per input (skipped
    /// ones with their reason) for Spark, DuckDB, Polars or Ray, skipped when an earlier run finished it
    #[arg(long, value_enum, default_value_t = SetFormat::Npz)]
    pub format: SetFormat,
    /// Embed only shard K of N (K from 0): a stable partition by path, for job arrays over many machines
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Inputs are texts, embedded with a text backbone
    #[arg(long)]
    pub text: bool,
    #[command(flatten)]
    pub text_flags: TextFlags,
    #[command(flatten)]
    pub embed: EmbedFlags,
    #[command(flatten)]
    pub backbone: BackboneArgs,
}

/// How `embed` writes a data set's embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SetFormat {
    Npz,
    Parquet,
}

pub fn run(args: EmbedArgs, runtime: RuntimeOptions) -> Outcome {
    let options = args
        .backbone
        .options(runtime, args.text_flags.tokenizer.clone())?;
    // One folder or table is a data set for an .npz; anything else is files (or texts) to print.
    if let [single] = args.inputs.as_slice()
        && !args.text
    {
        let path = Path::new(single);
        match Data::open(path, &args.text_flags.options()) {
            // A single other file is an image to print, below.
            Ok(Data::Embeddings(_)) => {}
            Ok(data) => return embed_data(data, path, &args, &options),
            Err(error) if path.exists() => return Err(error.into()),
            // Not there: the image decoder below says so.
            Err(_) => {}
        }
    }
    if let Some(out) = &args.output_file {
        return Err(usage(format!(
            "-o {} writes a data set's embeddings: give one folder or text table",
            out.display()
        )));
    }
    if args.shard.is_some() || args.format != SetFormat::Npz {
        return Err(usage(
            "--shard and --format are for a data set: give one folder or text table, and -o",
        ));
    }
    let (data, modality) = if args.text {
        let texts = texts::unlabelled("input", args.inputs.clone());
        (Data::Texts(texts), Modality::Text)
    } else {
        let paths: Vec<PathBuf> = args.inputs.iter().map(PathBuf::from).collect();
        (Data::Images(files::from_paths(&paths)), Modality::Image)
    };
    let set = workflow::embed_each(
        &data,
        &args.backbone.reference(modality),
        &options,
        &args.embed.options(),
    )?;
    for (input, row) in args.inputs.iter().zip(set.matrix().rows()) {
        let line = serde_json::json!({ "input": input, "embedding": row.to_vec() });
        println!("{line}");
    }
    Ok(())
}

fn embed_data(data: Data, path: &Path, args: &EmbedArgs, options: &BackboneOptions) -> Outcome {
    let out = args.output_file.clone().ok_or_else(|| {
        usage(format!(
            "embedding {} writes an .npz (or Parquet shards with --format parquet): pass -o OUT",
            path.display()
        ))
    })?;
    let flags = &args.embed;
    let written = match args.format {
        SetFormat::Npz => {
            let data = match args.shard {
                Some(shard) => data.shard(shard),
                None => data,
            };
            let (set, summary) =
                embed_with_progress(&data, args.backbone.given().as_ref(), options, flags)?;
            if set.rows() == 0 {
                return Err(
                    Error::input(path, "nothing could be embedded; nothing written").into(),
                );
            }
            set.write_npz(&out)?;
            (out, set.dim, set.rows(), summary)
        }
        SetFormat::Parquet => {
            if data.modality().is_none() {
                return Err(usage(format!(
                    "{} holds embeddings already: --format parquet embeds a folder or text table",
                    path.display()
                )));
            }
            let mut bar = flags.progress(data.modality().map_or("rows", Modality::unit));
            let result = workflow::embed_parquet_shard(
                data,
                args.shard.unwrap_or(Shard::WHOLE),
                &out,
                args.backbone.given().as_ref(),
                options,
                &flags.options(),
                &mut |done, total| bar.update(done, total),
            );
            bar.finish();
            match result? {
                ParquetShard {
                    file,
                    embedded: None,
                } => {
                    if flags.json {
                        println!(
                            "{}",
                            serde_json::json!({"output": file.display().to_string(), "already_written": true})
                        );
                    } else if !flags.quiet {
                        println!(
                            "shard {} is already in {}: skipped",
                            args.shard.unwrap_or(Shard::WHOLE),
                            file.display()
                        );
                    }
                    return Ok(());
                }
                ParquetShard {
                    file,
                    embedded: Some((set, summary)),
                } => (file, set.dim, set.rows(), summary),
            }
        }
    };
    let (out, dim, rows, summary) = written;
    if flags.json {
        let mut value = serde_json::to_value(&summary).unwrap_or_default();
        value["output"] = serde_json::json!(out.display().to_string());
        value["dim"] = serde_json::json!(dim);
        println!("{value}");
    } else if !flags.quiet {
        if let Some(summary) = &summary {
            print_embed_summary(summary, flags.verbose);
        }
        println!("-> {} [{rows} x {dim}]", out.display());
    }
    Ok(())
}

/// Embeddings of a folder or text table (with a progress bar), or an .npz.
fn embed_with_progress(
    data: &Data,
    backbone: Option<&BackboneRef>,
    options: &BackboneOptions,
    flags: &EmbedFlags,
) -> Result<(EmbeddedSet, Option<EmbedSummary>)> {
    let mut bar = flags.progress(data.modality().map_or("rows", Modality::unit));
    let result = workflow::embeddings_for(
        data,
        backbone,
        options,
        &flags.options(),
        &mut |done, total| bar.update(done, total),
    );
    bar.finish();
    result
}
