//! Newtype ids, so an account id can never be passed where a product instance id is expected.
//! Each is a UUID (v7: time-ordered, so inserts stay local in the index) stored as `uuid`.

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use uuid::Uuid;

/// The schema of every id: a UUID string, described by what it names.
fn uuid_schema(names: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
        .description(Some(format!("Id (UUID) of: {names}")))
        .into()
}

macro_rules! uuid_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            Serialize,
            Deserialize,
            AsExpression,
            FromSqlRow,
        )]
        #[diesel(sql_type = sql_types::Uuid)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl ToSql<sql_types::Uuid, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <Uuid as ToSql<sql_types::Uuid, Pg>>::to_sql(&self.0, &mut out.reborrow())
            }
        }

        impl FromSql<sql_types::Uuid, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                <Uuid as FromSql<sql_types::Uuid, Pg>>::from_sql(bytes).map(Self)
            }
        }

        /// In the OpenAPI document: a UUID string (serde is transparent).
        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                uuid_schema($doc)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

uuid_id!(AccountId, "A local account (tenant).");
uuid_id!(LvaId, "A local virtual account.");
uuid_id!(ProductInstanceId, "A product instance.");
uuid_id!(JobId, "A durable job.");
uuid_id!(AckId, "A stored ACK.");
uuid_id!(UploadId, "A reportusage batch sent to CSSM.");
uuid_id!(SyncRunId, "A row of the synchronisation ledger.");
uuid_id!(DevicePollId, "A poll id handed to a device.");
uuid_id!(UserId, "An admin user.");
uuid_id!(WebhookId, "A webhook endpoint of an account.");
uuid_id!(DeliveryId, "One event on its way to one webhook.");
uuid_id!(
    AuthorizationId,
    "An authorization code (SLAC) for one device and entitlement."
);
