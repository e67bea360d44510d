//! The global device switches kept in the database (device validation, NAT support); a tenant
//! may override each in its own settings.

use chrono::{DateTime, Utc};
use outpost_db::enums::EventResult;
use outpost_db::events::{self, NewEvent};
use outpost_db::{AsyncPgConnection, system};
use serde_json::json;

use crate::error::AppResult;

/// The global switches.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct DeviceSwitches {
    /// Refuse reports from PIs not already in the tenant's inventory.
    pub validate_device: bool,
    /// PIs are identified by UDI only and never pulled.
    pub nat_support: bool,
}

/// The switches in effect.
pub async fn switches(conn: &mut AsyncPgConnection) -> AppResult<DeviceSwitches> {
    Ok(DeviceSwitches {
        validate_device: system::validate_device(conn).await?,
        nat_support: system::nat_support(conn).await?,
    })
}

/// Changes the switches given (`None` leaves one); a system event records who did.
pub async fn set_switches(
    conn: &mut AsyncPgConnection,
    validate_device: Option<bool>,
    nat_support: Option<bool>,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<DeviceSwitches> {
    if let Some(on) = validate_device {
        system::set_validate_device(conn, on).await?;
    }
    if let Some(on) = nat_support {
        system::set_nat_support(conn, on).await?;
    }
    let event = NewEvent {
        account_id: None,
        pi_id: None,
        actor: actor.to_owned(),
        action: "settings.update".into(),
        result: EventResult::Ok,
        detail: json!({ "validate_device": validate_device, "nat_support": nat_support }),
        created_at: now,
    };
    events::record(conn, &event).await?;
    switches(conn).await
}
