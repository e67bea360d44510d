//! The audit trail: every admin, device and sync action with who, what, when and the result.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::Value;

use crate::enums::EventResult;
use crate::ids::{AccountId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::events;

/// An event to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = events)]
pub struct NewEvent {
    /// Account, or `None` for system-wide events.
    pub account_id: Option<AccountId>,
    /// Device concerned, if any.
    pub pi_id: Option<ProductInstanceId>,
    /// Who: `user:<name>`, `device:<udi>`, `system`.
    pub actor: String,
    /// What, dotted: `device.usage_report`, `cssm.sync`, `account.create`.
    pub action: String,
    /// Outcome.
    pub result: EventResult,
    /// Details.
    pub detail: Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl NewEvent {
    /// An event of an account (not about one device).
    pub fn account(
        account: AccountId,
        actor: impl Into<String>,
        action: &str,
        result: EventResult,
        detail: Value,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            account_id: Some(account),
            pi_id: None,
            actor: actor.into(),
            action: action.into(),
            result,
            detail,
            created_at: at,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
pub struct Event {
    /// Id.
    pub id: i64,
    /// Account.
    pub account_id: Option<AccountId>,
    /// Device.
    pub pi_id: Option<ProductInstanceId>,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Outcome.
    pub result: EventResult,
    /// Details (free-form: what the action was about).
    #[schema(value_type = Object)]
    pub detail: Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Records an event.
pub async fn record(conn: &mut AsyncPgConnection, event: &NewEvent) -> Result<(), DbError> {
    diesel::insert_into(events::table)
        .values(event)
        .execute(conn)
        .await?;
    Ok(())
}

/// The latest events of an account, newest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    limit: i64,
) -> Result<Vec<Event>, DbError> {
    Ok(events::table
        .filter(events::account_id.eq(account))
        .order(events::id.desc())
        .limit(limit)
        .select(Event::as_select())
        .load(conn)
        .await?)
}
