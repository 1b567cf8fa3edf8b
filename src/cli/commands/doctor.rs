//! `headstart doctor`: what runs where.

use crate::cli::failure::Outcome;
use clap::Args;
use headstart::runtime::{self, Diagnosis, RuntimeOptions};

#[derive(Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DoctorArgs, runtime: &RuntimeOptions) -> Outcome {
    let diagnosis = runtime::doctor(runtime)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&diagnosis).unwrap_or_default()
        );
    } else {
        print_diagnosis(&diagnosis);
    }
    Ok(())
}

fn print_diagnosis(d: &Diagnosis) {
    println!(
        "ONNX Runtime  {} at {}",
        d.runtime_version,
        d.runtime_library.display()
    );
    println!("  build       {}", d.runtime_build);
    println!("  providers   {}", d.providers.join(", "));
    match (&d.driver, &d.driver_problem) {
        (Some(driver), _) => println!(
            "NVIDIA driver {} ({})",
            driver.version,
            if driver.gpus.is_empty() {
                "no GPU listed".to_string()
            } else {
                driver.gpus.join(", ")
            }
        ),
        (None, Some(problem)) => println!("NVIDIA driver: {problem}"),
        (None, None) => {}
    }
    for library in &d.nvidia_libraries {
        println!(
            "  loaded      {} from {} ({})",
            library.name,
            library.path.display(),
            library.source
        );
    }
    if let Some(problem) = &d.cuda_problem {
        println!("CUDA not used: {problem}");
    }
    println!(
        "device        {} (a test convolution ran there in {:.0} ms, start-up included)",
        d.device, d.check_ms
    );
    match (&d.placement, d.device.is_cuda()) {
        (Some(placement), _) => println!("  placement   {placement}"),
        (None, true) => println!("  placement   not reported by ONNX Runtime"),
        (None, false) => {}
    }
}
