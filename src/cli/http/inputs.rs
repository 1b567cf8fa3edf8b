//! A request's inputs, however they were sent: the raw body as one input, `multipart/form-data` with one input
//! per part, or JSON `{"inputs": [...]}` of base64 images or of texts.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};
use base64::Engine;
use headstart::Modality;
use headstart::classifier::Input;
use serde::Deserialize;

use super::{Failure, bad_request};

#[derive(Deserialize)]
struct InputsRequest {
    inputs: Vec<String>,
}

/// The inputs of `request` for a model that takes `modality`.
pub async fn read(request: Request, modality: Modality) -> Result<Vec<Input>, Failure> {
    let content_type = content_type(request.headers()).to_string();
    if content_type.starts_with("multipart/form-data") {
        return from_multipart(request, modality).await;
    }
    let body = Bytes::from_request(request, &()).await?;
    if content_type.starts_with("application/json") {
        let request: InputsRequest = parse_json(&body)?;
        return from_json(request.inputs, modality);
    }
    Ok(vec![from_bytes(body, modality, "the body")?])
}

async fn from_multipart(request: Request, modality: Modality) -> Result<Vec<Input>, Failure> {
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|rejection| Failure(rejection.status(), rejection.body_text()))?;
    let mut inputs = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| Failure(e.status(), e.body_text()))?
    {
        let bytes = field
            .bytes()
            .await
            .map_err(|e| Failure(e.status(), e.body_text()))?;
        let part = format!("part {}", inputs.len());
        inputs.push(from_bytes(bytes, modality, &part)?);
    }
    if inputs.is_empty() {
        return Err(bad_request("the multipart body has no parts"));
    }
    Ok(inputs)
}

fn from_bytes(bytes: Bytes, modality: Modality, what: &str) -> Result<Input, Failure> {
    match modality {
        Modality::Image => Ok(Input::Image(bytes.to_vec())),
        Modality::Text => String::from_utf8(bytes.to_vec())
            .map(Input::Text)
            .map_err(|_| {
                bad_request(format!(
                    "{what} is not UTF-8 text, which a text bundle takes"
                ))
            }),
    }
}

/// JSON inputs as the model takes them: texts as they are, images as base64 of their file's bytes.
pub fn from_json(inputs: Vec<String>, modality: Modality) -> Result<Vec<Input>, Failure> {
    match modality {
        Modality::Text => Ok(inputs.into_iter().map(Input::Text).collect()),
        Modality::Image => inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map(Input::Image)
                    .map_err(|e| bad_request(format!("inputs[{index}] is not base64: {e}")))
            })
            .collect(),
    }
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
}

pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("the JSON body: {e}")))
}
