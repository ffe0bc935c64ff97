//! Typed request bodies behind the lenient JSON extractor.
//!
//! A handler declares its body as a serde struct of [`Field`]s and takes it as `Body<T>`. The
//! body is read like [`JsonBody`] (empty is `{}`, no content type needed, 400 `INVALID_JSON` for
//! anything but an object), then each field is read leniently, as the frontend sends them
//! (numbers as strings from the admin form). A field of the wrong type is not a serde rejection:
//! the handler's validation sees it and answers the endpoint's own message and code.
//!
//! Body types also derive `utoipa::ToSchema` for `/api-docs` (`api_docs::BODIES`): each field
//! says the JSON type it documents (`#[schema(value_type = …)]`) and is `#[serde(default)]` per
//! field (a container-level default would make utoipa print every default).

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{Code, Error};

/// A JSON object body. Like the original (express.json), an empty body is `{}` and the content type
/// is not insisted on; malformed JSON is 400 `{success:false, message}`, an oversize body 413.
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::Failure(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Code::PayloadTooLarge,
                    "요청 본문이 너무 큽니다.".into(),
                )
            } else {
                Error::rejected(Code::InvalidJson, e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            // PostgreSQL text cannot hold NUL: refused here rather than as a 500 from the query
            Ok(Value::Object(map)) if map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) => {
                Err(Error::rejected(
                    Code::InvalidJson,
                    "JSON body must not contain NUL characters",
                ))
            }
            Ok(Value::Object(map)) => Ok(JsonBody(map)),
            // express.json (strict) refuses top-level scalars and arrays too
            Ok(_) => Err(Error::rejected(
                Code::InvalidJson,
                "JSON body must be an object",
            )),
            Err(e) => Err(Error::rejected(
                Code::InvalidJson,
                format!("Invalid JSON: {e}"),
            )),
        }
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A JSON object body read into `T`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let JsonBody(map) = JsonBody::from_request(req, state).await?;
        // Field never fails to deserialize, so neither does a struct of them.
        serde_json::from_value(Value::Object(map))
            .map(Body)
            .map_err(Error::internal)
    }
}

/// One body field: what was sent, and its value when it reads as `T`. Mark it `#[serde(default)]`
/// so an absent key is [`Field::absent`].
#[derive(Debug, Clone)]
pub struct Field<T> {
    raw: Option<Value>,
    value: Option<T>,
}

impl<T> Default for Field<T> {
    fn default() -> Self {
        Self {
            raw: None,
            value: None,
        }
    }
}

impl<T> Field<T> {
    /// The value, when sent and of the right type.
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }
    pub fn into_value(self) -> Option<T> {
        self.value
    }
    /// As sent (for echoing it in a field error); `None` when absent.
    pub fn raw(&self) -> Option<&Value> {
        self.raw.as_ref()
    }
    pub fn absent(&self) -> bool {
        self.raw.is_none()
    }
    /// Sent as JSON `null`.
    pub fn is_null(&self) -> bool {
        matches!(self.raw, Some(Value::Null))
    }
    /// Sent and not `null` (of any type).
    pub fn present(&self) -> bool {
        !self.absent() && !self.is_null()
    }
}

impl Field<String> {
    /// A non-blank string, trimmed.
    pub fn text(&self) -> Option<String> {
        self.get()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

impl<'de, T: FromJson> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        let value = T::from_json(&raw);
        Ok(Self {
            raw: Some(raw),
            value,
        })
    }
}

/// How a field's type is read from JSON, leniently.
pub trait FromJson: Sized {
    fn from_json(v: &Value) -> Option<Self>;
}

impl FromJson for String {
    fn from_json(v: &Value) -> Option<Self> {
        v.as_str().map(str::to_string)
    }
}

impl FromJson for Uuid {
    fn from_json(v: &Value) -> Option<Self> {
        v.as_str().and_then(tiketi_core::ids::parse_uuid)
    }
}

/// `true`/`false`, or the strings `"true"`/`"false"`.
impl FromJson for bool {
    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }
}

/// An integer as a JSON integer (or an integral float), or as a string of digits.
impl FromJson for i64 {
    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            }),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// An array whose every element reads as `T`.
impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(v: &Value) -> Option<Self> {
        v.as_array()?.iter().map(T::from_json).collect()
    }
}

/// An element of an array as sent and as read (`Vec<Field<T>>`: every element is kept, so a
/// handler can tell a wrong element from a wrong array).
impl<T: FromJson> FromJson for Field<T> {
    fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            raw: Some(v.clone()),
            value: T::from_json(v),
        })
    }
}

/// `FromJson` for a nested struct of [`Field`]s: it reads from a JSON object (any object: its
/// fields never fail), nothing else.
#[macro_export]
macro_rules! nested_body {
    ($t:ty) => {
        impl $crate::body::FromJson for $t {
            fn from_json(v: &serde_json::Value) -> Option<Self> {
                v.is_object()
                    .then(|| serde_json::from_value(v.clone()).ok())
                    .flatten()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        #[serde(default)]
        name: Field<String>,
        #[serde(default)]
        total_quantity: Field<i64>,
        #[serde(default)]
        pinned: Field<bool>,
    }

    #[test]
    fn body_fields_are_absent_null_wrong_or_given() {
        let s: Sample =
            serde_json::from_value(json!({ "name": 7, "totalQuantity": "12", "pinned": null }))
                .unwrap();
        assert!(s.name.present() && s.name.get().is_none());
        assert_eq!(s.name.raw(), Some(&json!(7)));
        assert_eq!(s.total_quantity.get(), Some(&12));
        assert!(s.pinned.is_null() && !s.pinned.present());
        let s: Sample = serde_json::from_value(json!({})).unwrap();
        assert!(s.name.absent() && s.total_quantity.absent() && s.pinned.absent());
        assert_eq!(i64::from_json(&json!(3.0)), Some(3));
        assert_eq!(i64::from_json(&json!(3.5)), None);
    }
}
