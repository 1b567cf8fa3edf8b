//! `headstart embed`: a data set into an .npz or Parquet shards, or files and texts as JSON lines.

use std::path::{Path, PathBuf};

use clap::Args;
use headstart::backbone::{BackboneOptions, BackboneRef, ImageBackbone, TextBackbone};
use headstart::data::decode::{DecodeOptions, decode_image};
use headstart::data::{Data, Shard};
use headstart::embeddings::{self, EmbedSummary, EmbeddedSet, parquet};
use headstart::runtime::RuntimeOptions;
use headstart::{Error, Modality, Result, workflow};

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

pub fn run(args: EmbedArgs, runtime: RuntimeOptions) -> Result<()> {
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
            Err(error) if path.exists() => return Err(error),
            // Not there: the image decoder below says so.
            Err(_) => {}
        }
    }
    if let Some(out) = &args.output_file {
        return Err(Error::Config(format!(
            "-o {} writes a data set's embeddings: give one folder or text table",
            out.display()
        )));
    }
    if args.shard.is_some() || args.format != SetFormat::Npz {
        return Err(Error::Config(
            "--shard and --format are for a data set: give one folder or text table, and -o".into(),
        ));
    }
    let embeddings = if args.text {
        let mut backbone = TextBackbone::open(&args.backbone.reference(Modality::Text), &options)?;
        let texts: Vec<&str> = args.inputs.iter().map(String::as_str).collect();
        backbone.embed(&texts)?
    } else {
        // Read first: a bad input path should not wait for a backbone download.
        let files = args
            .inputs
            .iter()
            .map(|p| std::fs::read(p).map_err(|e| Error::io(Path::new(p), e)))
            .collect::<Result<Vec<_>>>()?;
        let mut backbone =
            ImageBackbone::open(&args.backbone.reference(Modality::Image), &options)?;
        let decode = DecodeOptions {
            max_pixels: args.embed.max_pixels,
            allow_truncated: args.embed.allow_truncated,
        };
        let images = args
            .inputs
            .iter()
            .zip(&files)
            .map(|(path, bytes)| {
                decode_image(bytes, &decode, Some(backbone.preprocess()))
                    .map_err(|message| Error::input(Path::new(path), message))
            })
            .collect::<Result<Vec<_>>>()?;
        backbone.embed(&images)?
    };
    for (input, row) in args.inputs.iter().zip(embeddings.rows()) {
        let line = serde_json::json!({ "input": input, "embedding": row.to_vec() });
        println!("{line}");
    }
    Ok(())
}

fn embed_data(data: Data, path: &Path, args: &EmbedArgs, options: &BackboneOptions) -> Result<()> {
    let out = args.output_file.clone().ok_or_else(|| {
        Error::Config(format!(
            "embedding {} writes an .npz (or Parquet shards with --format parquet): pass -o OUT",
            path.display()
        ))
    })?;
    let data = match args.shard {
        Some(shard) => data.shard(shard),
        None => data,
    };
    let flags = &args.embed;
    let written = match args.format {
        SetFormat::Npz => {
            let (set, summary) =
                embed_with_progress(&data, args.backbone.given().as_ref(), options, flags)?;
            if set.rows() == 0 {
                return Err(Error::input(
                    path,
                    "nothing could be embedded; nothing written",
                ));
            }
            set.write_npz(&out)?;
            (out, set.dim, set.rows(), summary)
        }
        SetFormat::Parquet => {
            let Some(modality) = data.modality() else {
                return Err(Error::Config(format!(
                    "{} holds embeddings already: --format parquet embeds a folder or text table",
                    path.display()
                )));
            };
            let shard = args.shard.unwrap_or(Shard::WHOLE);
            let file = parquet::shard_path(&out, shard);
            // Open the backbone first: a finished shard is known by the backbone that made it.
            let mut backbone = workflow::open_backbone(
                &args.backbone.reference(modality),
                &data,
                options,
                &flags.options(),
            )?;
            if parquet::is_finished(&file, backbone.identity(), &backbone.input_spec())? {
                if flags.json {
                    println!(
                        "{}",
                        serde_json::json!({"output": file.display().to_string(), "already_written": true})
                    );
                } else if !flags.quiet {
                    println!("shard {shard} is already in {}: skipped", file.display());
                }
                return Ok(());
            }
            let mut bar = flags.progress(modality.unit());
            let result = embeddings::embed(
                &data,
                &mut backbone,
                &flags.options(),
                &mut |done, total| bar.update(done, total),
            );
            bar.finish();
            let (set, summary) = result?;
            let skipped = summary.as_ref().map_or(&[][..], |s| &s.skipped[..]);
            parquet::write_parquet(&set, skipped, &file)?;
            (file, set.dim, set.rows(), summary)
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
