//! What a backbone reads: images or texts. Data, backbones, bundles and the zoo each say which.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Image,
    Text,
}

impl Modality {
    /// The plural a count is given in: "images", "texts".
    pub fn unit(self) -> &'static str {
        match self {
            Modality::Image => "images",
            Modality::Text => "texts",
        }
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Modality::Image => "image",
            Modality::Text => "text",
        })
    }
}

impl std::str::FromStr for Modality {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "image" => Ok(Modality::Image),
            "text" => Ok(Modality::Text),
            other => Err(format!("'{other}' is not one of image, text")),
        }
    }
}
