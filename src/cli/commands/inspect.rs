//! `headstart inspect`: an ONNX file's inputs, outputs, opsets and tensors.

use std::path::PathBuf;

use crate::cli::failure::Outcome;
use clap::Args;
use headstart::backbone;
use headstart::runtime::RuntimeOptions;

#[derive(Args)]
pub struct InspectArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub layers: bool,
}

pub fn run(args: &InspectArgs, runtime: &RuntimeOptions) -> Outcome {
    let report = backbone::inspect(&args.model, runtime)?;
    let s = &report.summary;
    println!("{}", report.path.display());
    println!("  sha256     {}", report.sha256);
    let opsets: Vec<String> = s.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    println!("  opset      {}", opsets.join(", "));
    println!(
        "  ir version {}   producer {}",
        s.ir_version,
        if s.producer.is_empty() {
            "-"
        } else {
            &s.producer
        }
    );
    println!(
        "  nodes      {}   initializers {}",
        s.node_count, s.initializer_count
    );
    println!("  inputs");
    for (name, ty) in &report.inputs {
        println!("    {name}: {ty}");
    }
    println!("  outputs");
    for (name, ty) in &report.outputs {
        println!("    {name}: {ty}");
    }
    if args.layers {
        println!("  tensors (for --layer)");
        for (name, op) in &s.tensors {
            println!("    {name}  ({op})");
        }
    }
    Ok(())
}
