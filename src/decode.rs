//! Decoding files into images: the format is told by the content, not the extension.

use std::path::Path;

use image::{DynamicImage, ImageReader};

use crate::error::{Error, Result};

/// Opens and decodes an image file.
pub fn open_image(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    if reader.format().is_none() {
        return Err(Error::input(
            path,
            "not an image in a format headstart reads (JPEG, PNG, WebP, GIF, BMP, TIFF)",
        ));
    }
    reader
        .decode()
        .map_err(|e| Error::input(path, format!("cannot decode image: {e}")))
}
