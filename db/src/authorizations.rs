//! Authorization codes (SLAC) for enforced and export-controlled licenses: one row per device
//! UDI and entitlement. A code in state `requested`, `issued` or `confirmed` holds `count` of
//! its LVA's licenses of that entitlement, so the pool (purchased minus held) never goes below
//! zero: every change that takes from a pool runs under the account's license-pool lock.
//!
//! Lifecycle: `requested` (asked of CSSM) -> `issued` (the signed SLAC is here; handed to the
//! device with its next answer) -> `confirmed` (the device sent the SLAC's confirmation code)
//! -> `returned` (the device gave it back; forwarded to CSSM). A newer request for the same
//! device and entitlement marks the older code `superseded_by` it: while CSSM is asked the pair
//! holds the larger of the two counts (SQL `authorization_held`), the old code becomes
//! `replaced` when the new one is issued, and holds alone again if CSSM refuses (`failed`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;

use crate::ids::{AccountId, AuthorizationId, LvaId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::authorizations;

/// States in which a code holds licenses of its pool.
pub const HOLDING: [&str; 3] = ["requested", "issued", "confirmed"];

/// An authorization code row.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, utoipa::ToSchema)]
#[diesel(table_name = authorizations, check_for_backend(diesel::pg::Pg))]
pub struct Authorization {
    /// Id.
    pub id: AuthorizationId,
    /// Account.
    #[serde(skip)]
    pub account_id: AccountId,
    /// The LVA whose pool it draws on.
    #[serde(skip)]
    pub lva_id: LvaId,
    /// The PI that asked (or that the UDI belongs to).
    pub pi_id: Option<ProductInstanceId>,
    /// The device request it answers (its poll id).
    pub request_id: Option<uuid::Uuid>,
    /// Device PID.
    pub udi_pid: String,
    /// Device serial.
    pub udi_serial_number: String,
    /// Entitlement tag.
    pub entitlement_tag: String,
    /// Licenses it holds.
    pub count: i32,
    /// `requested`, `issued`, `confirmed`, `returned`, `replaced` or `failed`.
    pub state: String,
    /// `device` or `import`.
    pub source: String,
    /// The signed SLAC file, once issued.
    #[serde(skip)]
    pub smart_license: Option<String>,
    /// The code the device confirms with.
    #[serde(skip)]
    pub confirm_code: Option<String>,
    /// The device's return code, once returned.
    pub return_code: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The pending request that will replace it.
    pub superseded_by: Option<uuid::Uuid>,
    /// CSSM's poll id once CSSM accepted the request.
    #[serde(skip)]
    pub cssm_poll_id: Option<String>,
    /// Asked for (or imported).
    pub requested_at: DateTime<Utc>,
    /// Issued by CSSM.
    pub issued_at: Option<DateTime<Utc>>,
    /// Handed to the device.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Confirmed by the device: installed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// Returned by the device.
    pub returned_at: Option<DateTime<Utc>>,
    /// The return reached CSSM.
    pub return_forwarded_at: Option<DateTime<Utc>>,
}

/// One device and entitlement asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Device PID.
    pub udi_pid: String,
    /// Device serial.
    pub udi_serial_number: String,
    /// Entitlement tag.
    pub entitlement_tag: String,
    /// How many.
    pub count: i32,
}

/// Why a request for codes was refused (nothing written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The LVA holds no such license, or it needs no code.
    NotAuthorizable(String),
    /// The pool holds fewer than asked.
    Insufficient(String),
    /// A request for the same device and entitlement still waits for CSSM.
    Pending(String),
}

#[derive(QueryableByName)]
struct PoolRow {
    #[diesel(sql_type = BigInt)]
    quantity: i64,
    #[diesel(sql_type = Text)]
    enforcement: String,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = BigInt)]
    held: i64,
}

/// Quantity, enforcement, name and licenses held by codes, of one LVA pool. Call under the
/// account's pool lock.
async fn pool(
    conn: &mut AsyncPgConnection,
    lva: LvaId,
    tag: &str,
) -> Result<Option<PoolRow>, DbError> {
    Ok(diesel::sql_query(
        "SELECT l.quantity, l.enforcement, l.name, authorization_held(l.lva_id, l.entitlement_tag) AS held
           FROM licenses l WHERE l.lva_id = $1 AND l.entitlement_tag = $2",
    )
    .bind::<SqlUuid, _>(lva)
    .bind::<Text, _>(tag)
    .get_result(conn)
    .await
    .optional()?)
}

/// Short name of an entitlement for messages: the licence name, else the tag.
fn label(row: Option<&PoolRow>, tag: &str) -> String {
    row.and_then(|r| r.name.clone())
        .unwrap_or_else(|| tag.to_owned())
}

/// Checks that the LVA's pools can give what the asks need beyond what they already hold
/// (`needs`: (tag, more licenses needed; negative frees some)). Call under the pool lock.
async fn check_pools(
    conn: &mut AsyncPgConnection,
    lva: LvaId,
    lva_number: i32,
    asks: &[(String, i64)],
) -> Result<Result<(), Refusal>, DbError> {
    let mut tags: Vec<&String> = asks.iter().map(|(t, _)| t).collect();
    tags.sort();
    tags.dedup();
    for tag in tags {
        let row = pool(conn, lva, tag).await?;
        let Some(row_ref) = row.as_ref() else {
            return Ok(Err(Refusal::NotAuthorizable(format!(
                "local virtual account {lva_number} holds no {tag}"
            ))));
        };
        if row_ref.enforcement == "unenforced" {
            return Ok(Err(Refusal::NotAuthorizable(format!(
                "{} is unenforced and needs no authorization code",
                label(row.as_ref(), tag)
            ))));
        }
        let asked: i64 = asks.iter().filter(|(t, _)| t == tag).map(|(_, c)| c).sum();
        let free = row_ref.quantity - row_ref.held;
        if asked > 0 && asked > free {
            return Ok(Err(Refusal::Insufficient(format!(
                "{}: local virtual account {lva_number} has {} of {} free for authorization, {asked} asked",
                label(row.as_ref(), tag),
                free.max(0),
                row_ref.quantity
            ))));
        }
    }
    Ok(Ok(()))
}

/// Takes the account's license-pool lock (shared with transfers and license sync).
async fn lock_pools(conn: &mut AsyncPgConnection, account: AccountId) -> Result<(), DbError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('outpost:licenses:' || $1::text))")
        .bind::<Text, _>(account.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// The codes a device holds for an entitlement (requested, issued or confirmed), locked.
async fn holding(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pid: &str,
    serial: &str,
    tag: &str,
) -> Result<Vec<Authorization>, DbError> {
    Ok(authorizations::table
        .filter(authorizations::account_id.eq(account))
        .filter(authorizations::udi_pid.eq(pid))
        .filter(authorizations::udi_serial_number.eq(serial))
        .filter(authorizations::entitlement_tag.eq(tag))
        .filter(authorizations::state.eq_any(HOLDING))
        .for_update()
        .select(Authorization::as_select())
        .load(conn)
        .await?)
}

/// A device's request for codes, checked against the pools and recorded as `requested` rows
/// of `request`. With `add` the new code covers what the device held plus the ask; otherwise
/// (replace) just the ask. Codes superseded become `replaced`. Call inside a transaction.
#[expect(clippy::too_many_arguments, reason = "the request's parts")]
pub async fn request(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    lva: (LvaId, i32),
    pi: ProductInstanceId,
    request: uuid::Uuid,
    asks: &[Ask],
    add: bool,
    now: DateTime<Utc>,
) -> Result<Result<Vec<Authorization>, Refusal>, DbError> {
    lock_pools(conn, account).await?;
    let mut totals = Vec::with_capacity(asks.len());
    let mut needs = Vec::with_capacity(asks.len());
    let mut superseded_ids = Vec::new();
    for ask in asks {
        let held = holding(
            conn,
            account,
            &ask.udi_pid,
            &ask.udi_serial_number,
            &ask.entitlement_tag,
        )
        .await?;
        if held.iter().any(|a| a.state == "requested") {
            return Ok(Err(Refusal::Pending(format!(
                "PID:{},SN:{} already waits for a code for {}; poll for it",
                ask.udi_pid, ask.udi_serial_number, ask.entitlement_tag
            ))));
        }
        let before: i32 = held.iter().map(|a| a.count).sum();
        let total = if add { before + ask.count } else { ask.count };
        totals.push((ask.entitlement_tag.clone(), i64::from(total)));
        // Until CSSM answers, the old code and the new one hold the larger of their counts.
        let old_here: i64 = held
            .iter()
            .filter(|a| a.lva_id == lva.0)
            .map(|a| i64::from(a.count))
            .sum();
        needs.push((
            ask.entitlement_tag.clone(),
            (i64::from(total) - old_here).max(0),
        ));
        superseded_ids.extend(held.iter().map(|a| a.id));
    }
    if let Err(refusal) = check_pools(conn, lva.0, lva.1, &needs).await? {
        return Ok(Err(refusal));
    }
    diesel::update(authorizations::table.filter(authorizations::id.eq_any(&superseded_ids)))
        .set(authorizations::superseded_by.eq(request))
        .execute(conn)
        .await?;
    let mut created = Vec::with_capacity(asks.len());
    for (ask, (_, total)) in asks.iter().zip(&totals) {
        let row = diesel::insert_into(authorizations::table)
            .values((
                authorizations::id.eq(AuthorizationId::new()),
                authorizations::account_id.eq(account),
                authorizations::lva_id.eq(lva.0),
                authorizations::pi_id.eq(pi),
                authorizations::request_id.eq(request),
                authorizations::udi_pid.eq(&ask.udi_pid),
                authorizations::udi_serial_number.eq(&ask.udi_serial_number),
                authorizations::entitlement_tag.eq(&ask.entitlement_tag),
                authorizations::count.eq(i32::try_from(*total).unwrap_or(i32::MAX)),
                authorizations::state.eq("requested"),
                authorizations::source.eq("device"),
                authorizations::requested_at.eq(now),
            ))
            .returning(Authorization::as_returning())
            .get_result(conn)
            .await?;
        created.push(row);
    }
    Ok(Ok(created))
}

/// The codes of one device request.
pub async fn of_request(
    conn: &mut AsyncPgConnection,
    request: uuid::Uuid,
) -> Result<Vec<Authorization>, DbError> {
    Ok(authorizations::table
        .filter(authorizations::request_id.eq(request))
        .order((
            authorizations::udi_serial_number,
            authorizations::entitlement_tag,
        ))
        .select(Authorization::as_select())
        .load(conn)
        .await?)
}

/// A code CSSM issued, verified.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Device PID.
    pub udi_pid: String,
    /// Device serial.
    pub udi_serial_number: String,
    /// Entitlement tag.
    pub entitlement_tag: String,
    /// The signed SLAC file.
    pub file: String,
    /// Its confirmation code.
    pub confirm_code: String,
}

/// Stores the codes CSSM issued for a request; returns how many rows they filled.
pub async fn issue(
    conn: &mut AsyncPgConnection,
    request: uuid::Uuid,
    codes: &[Issued],
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    let mut filled = 0;
    for code in codes {
        filled += diesel::update(
            authorizations::table
                .filter(authorizations::request_id.eq(request))
                .filter(authorizations::udi_pid.eq(&code.udi_pid))
                .filter(authorizations::udi_serial_number.eq(&code.udi_serial_number))
                .filter(authorizations::entitlement_tag.eq(&code.entitlement_tag))
                .filter(authorizations::state.eq("requested")),
        )
        .set((
            authorizations::state.eq("issued"),
            authorizations::smart_license.eq(&code.file),
            authorizations::confirm_code.eq(&code.confirm_code),
            authorizations::issued_at.eq(now),
        ))
        .execute(conn)
        .await?;
        // The code it supersedes is replaced now that the new one exists.
        diesel::update(
            authorizations::table
                .filter(authorizations::superseded_by.eq(request))
                .filter(authorizations::udi_pid.eq(&code.udi_pid))
                .filter(authorizations::udi_serial_number.eq(&code.udi_serial_number))
                .filter(authorizations::entitlement_tag.eq(&code.entitlement_tag))
                .filter(authorizations::state.eq_any(["issued", "confirmed"])),
        )
        .set(authorizations::state.eq("replaced"))
        .execute(conn)
        .await?;
    }
    Ok(filled)
}

/// Keeps CSSM's poll id of a request, so a retried job polls instead of asking again.
pub async fn set_cssm_poll_id(
    conn: &mut AsyncPgConnection,
    request: uuid::Uuid,
    poll_id: &str,
) -> Result<(), DbError> {
    diesel::update(
        authorizations::table
            .filter(authorizations::request_id.eq(request))
            .filter(authorizations::state.eq("requested")),
    )
    .set(authorizations::cssm_poll_id.eq(poll_id))
    .execute(conn)
    .await?;
    Ok(())
}

/// Fails requests CSSM has not answered for a day and whose job is gone, so their licenses and
/// the devices' next requests are not held forever. Returns how many codes failed.
pub async fn expire_stale(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    #[derive(QueryableByName)]
    struct Stale {
        #[diesel(sql_type = SqlUuid)]
        request_id: uuid::Uuid,
    }
    let stale: Vec<Stale> = diesel::sql_query(
        "SELECT DISTINCT a.request_id FROM authorizations a
          WHERE a.state = 'requested' AND a.requested_at < $1 - interval '1 day'
            AND NOT EXISTS (SELECT 1 FROM jobs j
                             WHERE j.kind = 'authorization_request'
                               AND j.payload->>'request_id' = a.request_id::text
                               AND j.state IN ('queued', 'running'))",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(now)
    .load(conn)
    .await?;
    let mut failed = 0;
    for row in stale {
        failed += fail(
            conn,
            row.request_id,
            "CSSM did not issue the codes within a day",
        )
        .await?;
    }
    Ok(failed)
}

/// Ends a request CSSM refused: its waiting codes fail with `message`, and the codes they were
/// to replace hold alone again (they held their licenses all along). Returns how many failed.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    request: uuid::Uuid,
    message: &str,
) -> Result<usize, DbError> {
    let failed = diesel::update(
        authorizations::table
            .filter(authorizations::request_id.eq(request))
            .filter(authorizations::state.eq("requested")),
    )
    .set((
        authorizations::state.eq("failed"),
        authorizations::error.eq(message),
    ))
    .execute(conn)
    .await?;
    diesel::update(
        authorizations::table
            .filter(authorizations::superseded_by.eq(request))
            .filter(authorizations::state.eq_any(["issued", "confirmed"])),
    )
    .set(authorizations::superseded_by.eq(None::<uuid::Uuid>))
    .execute(conn)
    .await?;
    Ok(failed)
}

/// Takes the issued codes of these devices not yet handed over, and marks them delivered.
pub async fn take_undelivered(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    devices: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<Vec<Authorization>, DbError> {
    let mut taken = Vec::new();
    for (pid, serial) in devices {
        let rows: Vec<Authorization> = diesel::update(
            authorizations::table
                .filter(authorizations::account_id.eq(account))
                .filter(authorizations::udi_pid.eq(pid))
                .filter(authorizations::udi_serial_number.eq(serial))
                .filter(authorizations::state.eq("issued"))
                .filter(authorizations::delivered_at.is_null()),
        )
        .set(authorizations::delivered_at.eq(now))
        .returning(Authorization::as_returning())
        .get_results(conn)
        .await?;
        taken.extend(rows);
    }
    Ok(taken)
}

/// Records a device's confirmation code; `None` when no issued or confirmed code of the device
/// has it. Confirming twice is harmless.
pub async fn confirm(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    (pid, serial): (&str, &str),
    code: &str,
    now: DateTime<Utc>,
) -> Result<Option<Authorization>, DbError> {
    let of_device = authorizations::table
        .filter(authorizations::account_id.eq(account))
        .filter(authorizations::udi_pid.eq(pid))
        .filter(authorizations::udi_serial_number.eq(serial))
        .filter(authorizations::confirm_code.eq(code));
    let confirmed = diesel::update(of_device.filter(authorizations::state.eq("issued")))
        .set((
            authorizations::state.eq("confirmed"),
            authorizations::confirmed_at.eq(now),
        ))
        .returning(Authorization::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    if confirmed.is_some() {
        return Ok(confirmed);
    }
    Ok(of_device
        .filter(authorizations::state.eq("confirmed"))
        .select(Authorization::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// Returns every code a device holds: its licenses go back to the pool at once, and the
/// return waits to be forwarded to CSSM. Empty when the device held none.
pub async fn give_back(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    (pid, serial): (&str, &str),
    return_code: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Authorization>, DbError> {
    lock_pools(conn, account).await?;
    Ok(diesel::update(
        authorizations::table
            .filter(authorizations::account_id.eq(account))
            .filter(authorizations::udi_pid.eq(pid))
            .filter(authorizations::udi_serial_number.eq(serial))
            .filter(authorizations::state.eq_any(["issued", "confirmed"])),
    )
    .set((
        authorizations::state.eq("returned"),
        authorizations::return_code.eq(return_code),
        authorizations::returned_at.eq(now),
        authorizations::superseded_by.eq(None::<uuid::Uuid>),
    ))
    .returning(Authorization::as_returning())
    .get_results(conn)
    .await?)
}

/// Returned codes not yet forwarded to CSSM.
pub async fn unforwarded_returns(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<Authorization>, DbError> {
    Ok(authorizations::table
        .filter(authorizations::account_id.eq(account))
        .filter(authorizations::state.eq("returned"))
        .filter(authorizations::return_forwarded_at.is_null())
        .order(authorizations::returned_at)
        .select(Authorization::as_select())
        .load(conn)
        .await?)
}

/// Records that returns reached CSSM.
pub async fn mark_forwarded(
    conn: &mut AsyncPgConnection,
    ids: &[AuthorizationId],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    diesel::update(authorizations::table.filter(authorizations::id.eq_any(ids)))
        .set(authorizations::return_forwarded_at.eq(now))
        .execute(conn)
        .await?;
    Ok(())
}

/// The codes of an account, newest first (at most `limit`), optionally of one PI.
pub async fn list(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: Option<ProductInstanceId>,
    limit: i64,
) -> Result<Vec<Authorization>, DbError> {
    let mut query = authorizations::table
        .filter(authorizations::account_id.eq(account))
        .into_boxed();
    if let Some(pi) = pi {
        query = query.filter(authorizations::pi_id.eq(pi));
    }
    Ok(query
        .order(authorizations::requested_at.desc())
        .limit(limit)
        .select(Authorization::as_select())
        .load(conn)
        .await?)
}

/// One verified row of a SLAC CSV.
#[derive(Debug, Clone)]
pub struct ImportRow {
    /// CSV line, for messages.
    pub line: usize,
    /// Where the code draws from: the device's LVA, else the one the import names.
    pub lva: (LvaId, i32),
    /// The device's PI, when known.
    pub pi: Option<ProductInstanceId>,
    /// The code.
    pub code: Issued,
    /// Licenses it holds.
    pub count: i32,
}

/// Imports verified codes, all or nothing: each must fit its pool, and a device keeps one
/// code per entitlement (a newer one replaces the older). `Err(rows)` must not be committed:
/// call it inside a transaction and roll back on `Err`.
pub async fn import(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    rows: &[ImportRow],
    now: DateTime<Utc>,
) -> Result<Result<usize, Vec<crate::inventory::RowError>>, DbError> {
    lock_pools(conn, account).await?;
    let mut problems = Vec::new();
    let mut created = 0;
    for row in rows {
        let c = &row.code;
        let exists: i64 = authorizations::table
            .filter(authorizations::account_id.eq(account))
            .filter(authorizations::udi_pid.eq(&c.udi_pid))
            .filter(authorizations::udi_serial_number.eq(&c.udi_serial_number))
            .filter(authorizations::entitlement_tag.eq(&c.entitlement_tag))
            .filter(authorizations::smart_license.eq(&c.file))
            .count()
            .get_result(conn)
            .await?;
        if exists > 0 {
            // The same file imported before: nothing to do.
            continue;
        }
        let held = holding(
            conn,
            account,
            &c.udi_pid,
            &c.udi_serial_number,
            &c.entitlement_tag,
        )
        .await?;
        if held.iter().any(|a| a.state == "requested") {
            problems.push(crate::inventory::RowError {
                line: row.line,
                reason: format!(
                    "PID:{},SN:{} waits for a code for {} from CSSM; import once it is answered",
                    c.udi_pid, c.udi_serial_number, c.entitlement_tag
                ),
            });
            continue;
        }
        // The imported code replaces what the device held at once.
        let old_here: i64 = held
            .iter()
            .filter(|a| a.lva_id == row.lva.0)
            .map(|a| i64::from(a.count))
            .sum();
        let needs = [(c.entitlement_tag.clone(), i64::from(row.count) - old_here)];
        if let Err(refusal) = check_pools(conn, row.lva.0, row.lva.1, &needs).await? {
            let (Refusal::NotAuthorizable(m) | Refusal::Insufficient(m) | Refusal::Pending(m)) =
                refusal;
            problems.push(crate::inventory::RowError {
                line: row.line,
                reason: m,
            });
            continue;
        }
        let ids: Vec<AuthorizationId> = held.iter().map(|a| a.id).collect();
        diesel::update(authorizations::table.filter(authorizations::id.eq_any(&ids)))
            .set((
                authorizations::state.eq("replaced"),
                authorizations::error.eq("superseded by an imported code"),
            ))
            .execute(conn)
            .await?;
        diesel::insert_into(authorizations::table)
            .values((
                authorizations::id.eq(AuthorizationId::new()),
                authorizations::account_id.eq(account),
                authorizations::lva_id.eq(row.lva.0),
                authorizations::pi_id.eq(row.pi),
                authorizations::udi_pid.eq(&c.udi_pid),
                authorizations::udi_serial_number.eq(&c.udi_serial_number),
                authorizations::entitlement_tag.eq(&c.entitlement_tag),
                authorizations::count.eq(row.count),
                authorizations::state.eq("issued"),
                authorizations::source.eq("import"),
                authorizations::smart_license.eq(&c.file),
                authorizations::confirm_code.eq(&c.confirm_code),
                authorizations::requested_at.eq(now),
                authorizations::issued_at.eq(now),
            ))
            .execute(conn)
            .await?;
        created += 1;
    }
    if problems.is_empty() {
        Ok(Ok(created))
    } else {
        Ok(Err(problems))
    }
}

#[derive(QueryableByName)]
struct Missing {
    #[diesel(sql_type = Text)]
    label: String,
}

/// Enforced or export-controlled entitlements a PI uses without an installed (confirmed) code.
pub async fn missing(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
) -> Result<Vec<String>, DbError> {
    let rows: Vec<Missing> = diesel::sql_query(
        "SELECT DISTINCT coalesce(l.name, u.entitlement_tag) AS label
           FROM entitlement_usage u
           JOIN product_instances p ON p.id = u.pi_id
           JOIN licenses l ON l.account_id = p.account_id AND l.entitlement_tag = u.entitlement_tag
          WHERE u.pi_id = $1 AND u.count > 0 AND l.enforcement <> 'unenforced'
            AND NOT EXISTS (
                SELECT 1 FROM authorizations a
                 WHERE a.account_id = p.account_id AND a.udi_pid = p.udi_pid
                   AND a.udi_serial_number = p.udi_serial_number
                   AND a.entitlement_tag = u.entitlement_tag AND a.state = 'confirmed')
          ORDER BY 1",
    )
    .bind::<SqlUuid, _>(pi)
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.label).collect())
}

/// Raises or clears a PI's "in use without an authorization code" alert.
pub async fn check_alert(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    use crate::alerts::{self, kinds};
    let missing = missing(conn, pi).await?;
    if missing.is_empty() {
        alerts::clear(conn, account, Some(pi), kinds::AUTHORIZATION_MISSING, now).await
    } else {
        let message = format!(
            "{} in use without an installed authorization code (SLAC)",
            missing.join(", ")
        );
        alerts::raise(
            conn,
            account,
            Some(pi),
            kinds::AUTHORIZATION_MISSING,
            crate::enums::Severity::Warning,
            &message,
            now,
        )
        .await
    }
}

/// How many licenses codes hold in one LVA pool (a transfer may not take them).
pub async fn held_in(conn: &mut AsyncPgConnection, lva: LvaId, tag: &str) -> Result<i64, DbError> {
    #[derive(QueryableByName)]
    struct HeldRow {
        #[diesel(sql_type = BigInt)]
        held: i64,
    }
    let row: HeldRow = diesel::sql_query("SELECT authorization_held($1, $2) AS held")
        .bind::<SqlUuid, _>(lva)
        .bind::<Text, _>(tag)
        .get_result(conn)
        .await?;
    Ok(row.held)
}

#[derive(QueryableByName)]
struct LvaOf {
    #[diesel(sql_type = SqlUuid)]
    id: LvaId,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    number: i32,
}

/// The LVA (id and number) a PI belongs to: its codes draw on that LVA's pools.
pub async fn lva_of(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
) -> Result<(LvaId, i32), DbError> {
    let row: LvaOf = diesel::sql_query(
        "SELECT l.id, l.number FROM product_instances p
           JOIN local_virtual_accounts l ON l.id = p.lva_id WHERE p.id = $1",
    )
    .bind::<SqlUuid, _>(pi)
    .get_result(conn)
    .await?;
    Ok((row.id, row.number))
}

/// The imported codes (from a SLAC CSV) waiting for every ask, not yet handed over nor claimed
/// by a request; `None` unless every ask has one. The device then gets them without a round
/// trip to CSSM.
pub async fn ready_imports(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    asks: &[Ask],
) -> Result<Option<Vec<AuthorizationId>>, DbError> {
    let mut ids = Vec::with_capacity(asks.len());
    for ask in asks {
        let id: Option<AuthorizationId> = authorizations::table
            .filter(authorizations::account_id.eq(account))
            .filter(authorizations::udi_pid.eq(&ask.udi_pid))
            .filter(authorizations::udi_serial_number.eq(&ask.udi_serial_number))
            .filter(authorizations::entitlement_tag.eq(&ask.entitlement_tag))
            .filter(authorizations::state.eq("issued"))
            .filter(authorizations::delivered_at.is_null())
            .filter(authorizations::source.eq("import"))
            .filter(authorizations::request_id.is_null())
            .select(authorizations::id)
            .first(conn)
            .await
            .optional()?;
        match id {
            Some(id) => ids.push(id),
            None => return Ok(None),
        }
    }
    Ok((!ids.is_empty()).then_some(ids))
}

#[derive(QueryableByName)]
struct Pair {
    #[diesel(sql_type = Text)]
    smart_account: String,
    #[diesel(sql_type = Text)]
    virtual_account: String,
}

/// The SA/VA pair a device's codes come from: its own, else its LVA's, else its account's
/// (as for its usage).
pub async fn pair_of(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    lva: LvaId,
    pi: Option<ProductInstanceId>,
) -> Result<(String, String), DbError> {
    let pair: Pair = diesel::sql_query(
        "SELECT coalesce(p.smart_account, l.smart_account, a.smart_account) AS smart_account,
                coalesce(p.virtual_account, l.virtual_account, a.virtual_account) AS virtual_account
           FROM local_accounts a
           JOIN local_virtual_accounts l ON l.account_id = a.id AND l.id = $2
           LEFT JOIN product_instances p ON p.id = $3 AND p.account_id = a.id
          WHERE a.id = $1",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<SqlUuid, _>(lva)
    .bind::<Nullable<SqlUuid>, _>(pi)
    .get_result(conn)
    .await?;
    Ok((pair.smart_account, pair.virtual_account))
}

/// Gives imported codes a request id, so the device's poll id for them hands them over again
/// if the answer is lost.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    ids: &[AuthorizationId],
    request: uuid::Uuid,
) -> Result<(), DbError> {
    diesel::update(authorizations::table.filter(authorizations::id.eq_any(ids)))
        .set(authorizations::request_id.eq(request))
        .execute(conn)
        .await?;
    Ok(())
}
