//! The library in a few lines: embed an image with the default backbone.
//!
//! cargo run --example embed_image -- path/to/photo.jpg

use headstart::backbone::{BackboneRef, ImageBackbone};
use headstart::{Modality, zoo};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: embed_image IMAGE")?;
    let image = headstart::data::decode::open_image(path.as_ref())?;
    let default = BackboneRef::Zoo(zoo::default_for(Modality::Image).name);
    let mut backbone = ImageBackbone::open(&default, &Default::default())?;
    let embedding = backbone.embed(&[image])?;
    let row = embedding.row(0);
    println!(
        "{path}: {}-d embedding from {}",
        row.len(),
        backbone.identity().name
    );
    println!(
        "first values: {:?}",
        &row.as_slice().unwrap_or(&[])[..row.len().min(8)]
    );
    Ok(())
}
