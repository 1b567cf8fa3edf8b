//! `headstart datasets`: demo datasets from package registries.

use crate::cli::failure::{Outcome, usage};
use clap::Subcommand;
use headstart::datasets;

#[derive(Subcommand)]
pub enum DatasetsCommand {
    /// Fetch a dataset and print its folder: `elpv` (solar cells, defective/functional class folders),
    /// `camera-photos` and `wallpaper-photos` (unlabelled JPEGs from Debian, the photo benchmark's sets)
    Fetch { name: String },
}

pub fn run(command: DatasetsCommand) -> Outcome {
    let DatasetsCommand::Fetch { name } = command;
    let folder = match name.as_str() {
        "elpv" => datasets::elpv_by_defect()?,
        "camera-photos" => datasets::camera_photos()?,
        "wallpaper-photos" => datasets::wallpaper_photos()?,
        other => {
            return Err(usage(format!(
                "no dataset '{other}' (have: elpv, camera-photos, wallpaper-photos)"
            )));
        }
    };
    println!("{}", folder.display());
    Ok(())
}
