//! Request bodies of the admin API: JSON objects, and nothing else. serde would read a struct
//! from a JSON array too (field by position), so `[]` passed for a body of optional fields and
//! `["Acme", "Corp", "Campus"]` created an account; an `Option<Json<T>>` took a malformed body
//! for no body at all. These extractors refuse both with the API's error envelope.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};

use crate::error::ApiError;

/// Reads `T` only from a JSON object.
struct Object<T>(T);

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// A JSON object body (`application/json`, within the API's size limit).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T> Body<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Body<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let json = web::Json::<Object<T>>::from_request(req, payload);
        Box::pin(async move { Ok(Body(json.await?.into_inner().0)) })
    }
}

/// A body that may be left out (empty means `T::default()`), else a JSON object as [`Body`].
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<T> OptionalBody<T> {
    /// The body, or the default.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes
                .await
                .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(OptionalBody(T::default()));
            }
            let Object(body) = serde_json::from_slice::<Object<T>>(&bytes)
                .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
            Ok(OptionalBody(body))
        })
    }
}
