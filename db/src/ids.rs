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
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            Serialize, Deserialize, AsExpression, FromSqlRow,
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
    };
}

uuid_id!(
    /// A local account (tenant).
    AccountId
);
uuid_id!(
    /// A local virtual account.
    LvaId
);
uuid_id!(
    /// A product instance.
    ProductInstanceId
);
uuid_id!(
    /// A durable job.
    JobId
);
uuid_id!(
    /// A stored ACK.
    AckId
);
uuid_id!(
    /// A reportusage batch sent to CSSM.
    UploadId
);
uuid_id!(
    /// A row of the synchronisation ledger.
    SyncRunId
);
uuid_id!(
    /// A poll id handed to a device.
    DevicePollId
);
uuid_id!(
    /// An admin user.
    UserId
);
uuid_id!(
    /// A webhook endpoint of an account.
    WebhookId
);
uuid_id!(
    /// One event on its way to one webhook.
    DeliveryId
);
uuid_id!(
    /// An authorization code (SLAC) for one device and entitlement.
    AuthorizationId
);
