//! Preprocessing from a JSON file beside a model: timm's `pretrained_cfg`, Hugging Face's
//! `preprocessor_config.json`, and headstart's own keys.

use std::path::Path;

use serde_json::Value;

use super::{ColourOrder, Interpolation, Layout, PreprocessOverrides, Resize};
use crate::error::{Error, Result};

impl PreprocessOverrides {
    /// Reads a JSON preprocessing file: timm's `pretrained_cfg` keys (input_size, mean, std, crop_pct,
    /// interpolation, crop_mode; also nested under "pretrained_cfg"), Hugging Face's
    /// `preprocessor_config.json` keys (size, crop_size, do_center_crop, image_mean, image_std, resample,
    /// do_rescale, rescale_factor), and headstart's own (layout, colour).
    pub(crate) fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::input(path, format!("not valid JSON: {e}")))?;
        Self::from_json(&value).map_err(|message| Error::input(path, message))
    }

    pub(crate) fn from_json(value: &Value) -> std::result::Result<Self, String> {
        let cfg = value.get("pretrained_cfg").unwrap_or(value);
        let obj = cfg.as_object().ok_or("expected a JSON object")?;
        let mut out = PreprocessOverrides::default();
        let hf = obj.contains_key("image_mean")
            || obj.contains_key("crop_size")
            || obj.contains_key("resample");

        // Normalisation: timm and HF give 0-1 values (HF only when it rescales); pixel units otherwise.
        let rescaled = obj
            .get("do_rescale")
            .and_then(Value::as_bool)
            .unwrap_or(true)
            && obj
                .get("rescale_factor")
                .and_then(Value::as_f64)
                .is_none_or(|f| (f - 1.0 / 255.0).abs() < 1e-6);
        let mean = triple(obj.get("image_mean").or(obj.get("mean")), "mean")?;
        let std = triple(obj.get("image_std").or(obj.get("std")), "std")?;
        let unit_scale = if hf {
            rescaled
        } else {
            mean.iter()
                .chain(std.iter())
                .flatten()
                .all(|v| v.abs() <= 1.0)
        };
        let scale = if unit_scale { 255.0 } else { 1.0 };
        out.mean = mean.map(|m| m.map(|v| v * scale));
        out.std = std.map(|s| s.map(|v| v * scale));
        if obj.get("do_normalize").and_then(Value::as_bool) == Some(false) {
            out.mean = Some([0.0; 3]);
            out.std = Some([if unit_scale { 255.0 } else { 1.0 }; 3]);
        }
        if let Some(s) = out.std
            && s.contains(&0.0)
        {
            return Err("std must not contain zero".into());
        }

        if let Some(size) = obj.get("input_size") {
            let dims = numbers(size).ok_or("input_size must be [channels, height, width]")?;
            match dims.as_slice() {
                [3.0, h, w] => {
                    out.size = Some((positive(*h, "input_size")?, positive(*w, "input_size")?))
                }
                _ => return Err("input_size must be [3, height, width]".into()),
            }
        }
        if let Some(crop) = obj.get("crop_pct").filter(|v| !v.is_null()) {
            let crop = crop.as_f64().ok_or("crop_pct must be a number")? as f32;
            if !(crop > 0.0 && crop <= 1.0) {
                return Err(format!("crop_pct must be in (0, 1], got {crop}"));
            }
            out.crop_pct = Some(crop);
            out.resize = Some(Resize::Crop);
        }
        match obj.get("crop_mode").and_then(Value::as_str) {
            Some("squash") => out.resize = Some(Resize::Stretch),
            Some("center") | None => {}
            Some(other) => {
                return Err(format!(
                    "crop_mode '{other}' is not supported (use center or squash)"
                ));
            }
        }
        if let Some(name) = obj.get("interpolation").and_then(Value::as_str) {
            out.interpolation = Some(interpolation_named(name)?);
        }
        if let Some(code) = obj.get("resample") {
            out.interpolation = Some(match code.as_i64() {
                Some(0) => Interpolation::Nearest,
                Some(1) => Interpolation::Lanczos,
                Some(2) => Interpolation::Bilinear,
                Some(3) => Interpolation::Bicubic,
                _ => {
                    return Err(format!(
                        "resample {code} is not a supported PIL filter (0, 1, 2 or 3)"
                    ));
                }
            });
        }
        if hf {
            hf_geometry(obj, &mut out)?;
        }
        if let Some(layout) = obj.get("layout").and_then(Value::as_str) {
            out.layout = Some(match layout.to_lowercase().as_str() {
                "nchw" => Layout::Nchw,
                "nhwc" => Layout::Nhwc,
                other => return Err(format!("layout '{other}' is not nchw or nhwc")),
            });
        }
        if let Some(colour) = obj
            .get("colour")
            .or(obj.get("color"))
            .and_then(Value::as_str)
        {
            out.colour = Some(match colour.to_lowercase().as_str() {
                "rgb" => ColourOrder::Rgb,
                "bgr" => ColourOrder::Bgr,
                other => return Err(format!("colour '{other}' is not rgb or bgr")),
            });
        }
        Ok(out)
    }
}

/// Hugging Face: `size` (shortest_edge, or height/width, or an int) then an optional centre crop.
fn hf_geometry(
    obj: &serde_json::Map<String, Value>,
    out: &mut PreprocessOverrides,
) -> std::result::Result<(), String> {
    let hw = |v: &Value| -> std::result::Result<Option<(u32, u32)>, String> {
        if let Some(n) = v.as_f64() {
            let n = positive(n, "size")?;
            return Ok(Some((n, n)));
        }
        match (
            v.get("height").and_then(Value::as_f64),
            v.get("width").and_then(Value::as_f64),
        ) {
            (Some(h), Some(w)) => Ok(Some((positive(h, "height")?, positive(w, "width")?))),
            _ => Ok(None),
        }
    };
    let crop = obj.get("crop_size").map(hw).transpose()?.flatten();
    let center_crop = obj
        .get("do_center_crop")
        .and_then(Value::as_bool)
        .unwrap_or(crop.is_some());
    let size = obj.get("size");
    let shortest = size
        .and_then(|s| s.get("shortest_edge"))
        .and_then(Value::as_f64);
    match (center_crop, crop) {
        (true, Some((ch, cw))) => {
            out.size = Some((ch, cw));
            out.resize = Some(Resize::Crop);
            let resized = shortest.or_else(|| size.and_then(Value::as_f64));
            if let Some(edge) = resized {
                out.crop_pct = Some((ch.min(cw) as f32 / edge as f32).min(1.0));
            } else if let Some((h, w)) = size.map(hw).transpose()?.flatten() {
                out.crop_pct = Some((ch as f32 / h as f32).min(cw as f32 / w as f32).min(1.0));
            }
        }
        _ => {
            if let Some((h, w)) = size.map(hw).transpose()?.flatten() {
                out.size = Some((h, w));
                out.resize = Some(Resize::Stretch);
            } else if let Some(edge) = shortest {
                let edge = positive(edge, "shortest_edge")?;
                out.size = Some((edge, edge));
                out.resize = Some(Resize::Crop);
                out.crop_pct = Some(1.0);
            }
        }
    }
    Ok(())
}

fn interpolation_named(name: &str) -> std::result::Result<Interpolation, String> {
    match name.to_lowercase().as_str() {
        "nearest" => Ok(Interpolation::Nearest),
        "bilinear" | "linear" | "triangle" => Ok(Interpolation::Bilinear),
        "bicubic" | "cubic" => Ok(Interpolation::Bicubic),
        "lanczos" | "lanczos3" => Ok(Interpolation::Lanczos),
        other => Err(format!(
            "interpolation '{other}' is not nearest, bilinear, bicubic or lanczos"
        )),
    }
}

fn numbers(value: &Value) -> Option<Vec<f64>> {
    value.as_array()?.iter().map(Value::as_f64).collect()
}

fn triple(value: Option<&Value>, name: &str) -> std::result::Result<Option<[f32; 3]>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if let Some(v) = value.as_f64() {
        return Ok(Some([v as f32; 3]));
    }
    match numbers(value).as_deref() {
        Some([a, b, c]) => Ok(Some([*a as f32, *b as f32, *c as f32])),
        _ => Err(format!("{name} must be a number or a list of 3 numbers")),
    }
}

fn positive(v: f64, name: &str) -> std::result::Result<u32, String> {
    if (1.0..=16384.0).contains(&v) && v.fract() == 0.0 {
        Ok(v as u32)
    } else {
        Err(format!(
            "{name} must be a whole number of pixels between 1 and 16384, got {v}"
        ))
    }
}
