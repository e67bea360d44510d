//! Enumerations stored as `text` with a CHECK constraint: readable in SQL, typed in Rust.

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

/// An unknown value read from a text enum column (a migration and the code disagree).
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} value '{value}'")]
pub struct UnknownVariant {
    kind: &'static str,
    value: String,
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow)]
        #[diesel(sql_type = Text)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownVariant { kind: stringify!($name), value: other.to_owned() }),
                }
            }
        }

        impl ToSql<Text, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), &mut out.reborrow())
            }
        }

        impl FromSql<Text, Pg> for $name {
            fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
                Ok(text.parse()?)
            }
        }

        /// In the OpenAPI document: one of the stored texts.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

text_enum!(
    /// Lifecycle of a local account.
    AccountStatus {
        /// Asked for, awaiting a system admin.
        Requested => "requested",
        /// Approved, not yet registered with CSSM.
        Approved => "approved",
        /// Registered; licensing functions work.
        Active => "active",
        /// Deactivated; devices get TENANT_INACTIVE.
        Inactive => "inactive",
    }
);

text_enum!(
    /// How Outpost talks to a product instance.
    ConnectMethod {
        /// The device pushes to its transport URL.
        Push => "push",
        /// Outpost pulls over the IOS-XE REST API.
        Rest => "rest",
        /// Outpost pulls over RESTCONF.
        Restconf => "restconf",
        /// Outpost pulls over NETCONF.
        Netconf => "netconf",
    }
);

text_enum!(
    /// How a report reached Outpost.
    ReportSource {
        /// JSON push to the transport URL.
        Push => "push",
        /// Offline RUM file posted to the transport URL.
        PushXml => "push_xml",
        /// Pulled from the device.
        Pull => "pull",
        /// Uploaded by an admin as a file.
        File => "file",
    }
);

text_enum!(
    /// Where an ACK came from.
    AckSource {
        /// Online CSSM synchronisation.
        CssmSync => "cssm_sync",
        /// An imported ACK bundle.
        FileImport => "file_import",
    }
);

text_enum!(
    /// State of a durable job.
    JobState {
        /// Waiting for `run_at`.
        Queued => "queued",
        /// Claimed by a worker.
        Running => "running",
        /// Done.
        Succeeded => "succeeded",
        /// Out of attempts.
        Failed => "failed",
        /// Replaced by a newer queued job for the same work.
        Cancelled => "cancelled",
    }
);

text_enum!(
    /// State of a reportusage batch.
    UploadState {
        /// Recorded, the call may or may not have reached CSSM.
        Sending => "sending",
        /// CSSM gave a poll id; ACKs pending.
        Polling => "polling",
        /// ACKs received.
        Complete => "complete",
    }
);

text_enum!(
    /// How a sync reached CSSM.
    SyncChannel {
        /// Over the network.
        Online => "online",
        /// By file.
        File => "file",
    }
);

text_enum!(
    /// Which way a sync moved data.
    SyncDirection {
        /// Outpost to CSSM.
        Outbound => "outbound",
        /// CSSM to Outpost.
        Inbound => "inbound",
        /// Both.
        Both => "both",
    }
);

text_enum!(
    /// Result of a sync.
    SyncState {
        /// Under way.
        Running => "running",
        /// Everything sent and acknowledged.
        Succeeded => "succeeded",
        /// Sent; some ACKs still pending at CSSM.
        Pending => "pending",
        /// Failed; the message says why.
        Failed => "failed",
        /// The process stopped mid-way; the next sync resumed it.
        Interrupted => "interrupted",
    }
);

text_enum!(
    /// Severity of an alert.
    Severity {
        /// Information.
        Info => "info",
        /// Needs attention soon.
        Warning => "warning",
        /// Needs attention now.
        Error => "error",
    }
);

text_enum!(
    /// Outcome recorded in an event.
    EventResult {
        /// Done.
        Ok => "ok",
        /// Refused (validation, policy).
        Rejected => "rejected",
        /// Failed (fault).
        Failed => "failed",
    }
);

text_enum!(
    /// System-wide role of an admin user.
    Role {
        /// Everything.
        SystemAdmin => "system_admin",
        /// All tenants, no users or settings.
        SystemOperator => "system_operator",
        /// Read-only, all tenants.
        SystemUser => "system_user",
    }
);

text_enum!(
    /// Role of a user on one local account.
    AccountRole {
        /// Manages the account: inventory, LVAs, licenses, syncs.
        AccountAdmin => "account_admin",
        /// Reads the account.
        AccountUser => "account_user",
    }
);
