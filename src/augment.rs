//! Augmentation for tiny datasets: extra views of each image (mirrored, centre-cropped) embedded as rows of
//! their own, so a head sees a little more variety than the few images there are.

use std::str::FromStr;

use image::DynamicImage;

/// Extra views of each image for tiny datasets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Augment {
    pub flip: bool,
    pub crop: bool,
}

impl FromStr for Augment {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let mut augment = Augment::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "flip" => augment.flip = true,
                "crop" => augment.crop = true,
                other => return Err(format!("unknown augmentation '{other}' (use flip, crop)")),
            }
        }
        Ok(augment)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    Original,
    /// Mirrored left to right.
    Flip,
    /// The centre 80%, zoomed in.
    Crop,
}

impl View {
    pub(crate) fn name(self) -> &'static str {
        match self {
            View::Original => "original",
            View::Flip => "flip",
            View::Crop => "crop",
        }
    }

    pub(crate) fn apply(self, image: &DynamicImage) -> DynamicImage {
        match self {
            View::Original => image.clone(),
            View::Flip => image.fliph(),
            View::Crop => {
                let (w, h) = (image.width(), image.height());
                let (cw, ch) = ((w * 4 / 5).max(1), (h * 4 / 5).max(1));
                image.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch)
            }
        }
    }
}

impl Augment {
    pub fn flip(mut self, on: bool) -> Self {
        self.flip = on;
        self
    }

    pub fn crop(mut self, on: bool) -> Self {
        self.crop = on;
        self
    }

    /// The views to embed, the original first.
    pub(crate) fn views(self) -> Vec<View> {
        let mut views = vec![View::Original];
        if self.flip {
            views.push(View::Flip);
        }
        if self.crop {
            views.push(View::Crop);
        }
        views
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augment_flags() {
        assert_eq!(
            "flip,crop".parse::<Augment>().unwrap(),
            Augment::default().flip(true).crop(true)
        );
        assert_eq!(
            "crop".parse::<Augment>().unwrap(),
            Augment::default().crop(true)
        );
        assert!("rotate".parse::<Augment>().is_err());
    }

    #[test]
    fn views_change_the_image() {
        let mut img = image::RgbImage::new(10, 5);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        let img = DynamicImage::ImageRgb8(img);
        assert_eq!(
            View::Flip.apply(&img).to_rgb8().get_pixel(9, 0).0,
            [255, 0, 0]
        );
        let crop = View::Crop.apply(&img);
        assert_eq!((crop.width(), crop.height()), (8, 4));
    }
}
