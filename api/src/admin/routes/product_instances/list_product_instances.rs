//! `GET /accounts/{id}/product-instances`: the inventory ("SL Using Policy") with search,
//! filters, sorting and pagination (keyset cursors stay fast at any depth).

use actix_web::{HttpResponse, web};
use chrono::Duration;
use outpost_app::inventory::parse_method;
use outpost_db::AccountId;
use outpost_db::accounts::LocalVirtualAccount;
use outpost_db::inventory::{self, AlertFilter, Cursor, InventoryQuery, InventoryRow, SortKey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::super::virtual_accounts::find_lva;
use super::super::{check_text, visible_account};
use crate::admin::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Where a capped count stops.
const COUNT_CAP: i64 = 10_000;
/// Most rows on one page.
const MAX_PER_PAGE: i64 = 500;

/// Inventory list parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this LVA (its number).
    lva: Option<i32>,
    /// Substring of UDI, hostname or host (case-insensitive).
    q: Option<String>,
    /// `any`, `none`, or an alert kind (e.g. `usage_report_received`).
    alert: Option<String>,
    /// `push`, `rest`, `restconf` or `netconf`.
    connect_method: Option<String>,
    /// Only PIs whose last contact is older than this many days (or never).
    last_contact_older_than_days: Option<u32>,
    /// `udi` (default), `hostname` or `last_contact`.
    sort: Option<String>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
    /// `next_cursor` of the previous page (fast at any depth).
    cursor: Option<String>,
    /// Page number from 1 (without a cursor; slower deep into large inventories).
    page: Option<i64>,
    /// Rows per page, 1 to 500, default 50.
    per_page: Option<i64>,
    /// `capped` (default): `total` counts up to 10,000 (`total_exceeds` says when there are
    /// more); `exact`: count them all (slower on large inventories); `none`: no `total`.
    count: Option<String>,
}

impl ListQuery {
    /// `last_contact_older_than_days` as a time: 0 to 36,500 days (a hundred years).
    fn contact_before(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        match self.last_contact_older_than_days {
            None => Ok(None),
            Some(days @ 0..=36_500) => Ok(Some(now - Duration::days(i64::from(days)))),
            Some(days) => Err(ApiError::invalid(format!(
                "last_contact_older_than_days must be 0 to 36500, not {days}"
            ))),
        }
    }

    fn to_query(
        &self,
        lva: Option<&LocalVirtualAccount>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<InventoryQuery, ApiError> {
        let sort = match self.sort.as_deref() {
            None | Some("udi") => SortKey::Udi,
            Some("hostname") => SortKey::Hostname,
            Some("last_contact") => SortKey::LastContact,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "sort '{other}' is not udi, hostname or last_contact"
                )));
            }
        };
        let descending = match self.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "order '{other}' is not asc or desc"
                )));
            }
        };
        let cursor = match &self.cursor {
            Some(text) => Some(Cursor::decode(text, sort).ok_or_else(|| {
                ApiError::invalid("cursor is not one this list gave for this sort order")
            })?),
            None => None,
        };
        let limit = self.per_page.unwrap_or(50);
        if !(1..=MAX_PER_PAGE).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "per_page must be 1 to {MAX_PER_PAGE}"
            )));
        }
        let page = self.page.unwrap_or(1);
        if !(1..=1_000_000).contains(&page) {
            return Err(ApiError::invalid("page must be 1 or more"));
        }
        if let Some(kind) = &self.alert {
            check_text("alert", kind, 64).map_err(ApiError::invalid)?;
        }
        let alert = self.alert.as_deref().map(|a| match a {
            "any" => AlertFilter::Any,
            "none" => AlertFilter::None,
            kind => AlertFilter::Kind(kind.to_owned()),
        });
        let connect_method = self
            .connect_method
            .as_deref()
            .map(parse_method)
            .transpose()
            .map_err(ApiError::invalid)?;
        if let Some(q) = &self.q {
            check_text("q", q, 100).map_err(ApiError::invalid)?;
        }
        let search = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        Ok(InventoryQuery {
            lva: lva.map(|l| l.id),
            search: search.map(str::to_owned),
            alert,
            connect_method,
            contact_before: self.contact_before(now)?,
            sort,
            descending,
            cursor,
            offset: (page - 1).saturating_mul(limit),
            limit,
            only_ids: None,
        })
    }
}

/// One page of the inventory.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryList {
    /// The rows.
    pub items: Vec<InventoryRow>,
    /// `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
    /// Rows matching the filters, capped at 10,000 with `count=capped` (the default);
    /// `null` with `count=none`.
    pub total: Option<i64>,
    /// There are more than `total` (only with `count=capped`).
    pub total_exceeds: bool,
}

/// Lists an account's product instances, one page at a time.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/product-instances", tag = "inventory",
    params(("id" = uuid::Uuid, Path, description = "Account id"), ListQuery),
    responses((status = 200, body = InventoryList),
        (status = 404), (status = 422)))]
pub async fn list_product_instances(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<AccountId>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let account = visible_account(&state, &principal, *id).await?;
    let lva = match query.lva {
        Some(n) => Some(find_lva(&state, account.id, n).await?),
        None => None,
    };
    let q = query.to_query(lva.as_ref(), state.clock.now())?;
    let mut conn = state.pool.get().await?;
    let page = inventory::list(&mut conn, account.id, &q).await?;
    let cap = match query.count.as_deref() {
        None | Some("capped") => Some(Some(COUNT_CAP)),
        Some("exact") => Some(None),
        Some("none") => None,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "count '{other}' is not capped, exact or none"
            )));
        }
    };
    let total = match cap {
        // One more than the cap tells "more than" from "exactly".
        Some(cap) => Some(inventory::count(&mut conn, account.id, &q, cap.map(|c| c + 1)).await?),
        None => None,
    };
    let exceeds = matches!((total, cap), (Some(t), Some(Some(c))) if t > c);
    Ok(HttpResponse::Ok().json(InventoryList {
        items: page.items,
        next_cursor: page.next_cursor,
        total: total.map(|t| if exceeds { COUNT_CAP } else { t }),
        total_exceeds: exceeds,
    }))
}
