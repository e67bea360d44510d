//! Product instances: created or updated by every device exchange, keyed by UDI per account.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::enums::ConnectMethod;
use crate::ids::{AccountId, LvaId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::{pi_ha_members, product_instances};

/// A product instance row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = product_instances, check_for_backend(diesel::pg::Pg))]
pub struct ProductInstance {
    /// Id.
    pub id: ProductInstanceId,
    /// Owning account.
    pub account_id: AccountId,
    /// Its local virtual account.
    pub lva_id: LvaId,
    /// UDI product id (`None` for a PI added by host that was never pulled).
    pub udi_pid: Option<String>,
    /// UDI serial number.
    pub udi_serial_number: Option<String>,
    /// The full `sudi` object.
    pub sudi: Value,
    /// Product instance UUID.
    pub product_instance_identifier: Option<String>,
    /// Hostname, unless hidden by privacy settings.
    pub hostname: Option<String>,
    /// Software version, unless hidden.
    pub software_version: Option<String>,
    /// Software tag.
    pub software_tag: Option<String>,
    /// Push or a pull method.
    pub connect_method: ConnectMethod,
    /// Last exchange.
    pub last_contact_at: Option<DateTime<Utc>>,
    /// Address of the last exchange.
    pub source_address: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Host Outpost pulls from.
    pub host: Option<String>,
    /// Port, when not the connect method's default.
    pub port: Option<i32>,
    /// Whether pull credentials are stored (they are never read back out through here).
    #[diesel(select_expression = product_instances::credentials.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<product_instances::credentials>)]
    pub has_credentials: bool,
    /// Behind NAT: identified by UDI only, never pulled.
    pub behind_nat: bool,
    /// REST or RESTCONF pulled over plain HTTP rather than HTTPS.
    pub plain_http: bool,
    /// The certificate (SHA-256, hex) or SSH host key (`SHA256:...`) pinned on first contact.
    pub peer_fingerprint: Option<String>,
    /// When it was pinned.
    pub peer_fingerprint_at: Option<DateTime<Utc>>,
    /// The last pull that worked.
    pub last_pull_at: Option<DateTime<Utc>>,
    /// SA its usage goes to, when not its LVA's.
    pub smart_account: Option<String>,
    /// VA its usage goes to, when not its LVA's.
    pub virtual_account: Option<String>,
    /// The PI reporting for its HA set, while this one is a member (its usage is not counted).
    pub ha_active_pi: Option<ProductInstanceId>,
}

impl ProductInstance {
    /// `PID:x,SN:y`, or the host for a PI not yet identified.
    pub fn label(&self) -> String {
        match (&self.udi_pid, &self.udi_serial_number, &self.host) {
            (Some(pid), Some(sn), _) => format!("PID:{pid},SN:{sn}"),
            (_, _, Some(host)) => format!("host {host}"),
            _ => self.id.to_string(),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = product_instances)]
struct NewProductInstance<'a> {
    id: ProductInstanceId,
    account_id: AccountId,
    lva_id: LvaId,
    udi_pid: &'a str,
    udi_serial_number: &'a str,
    sudi: &'a Value,
    product_instance_identifier: Option<&'a str>,
    hostname: Option<&'a str>,
    software_version: Option<&'a str>,
    software_tag: Option<&'a str>,
    connect_method: ConnectMethod,
    last_contact_at: Option<DateTime<Utc>>,
    source_address: Option<&'a str>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    behind_nat: bool,
}

/// What a device exchange tells about the device. `None` fields keep their stored value, so
/// a device whose privacy settings hide its hostname does not erase the known one.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = product_instances)]
pub struct DeviceContact {
    /// The full `sudi` object as sent.
    pub sudi: Value,
    /// Product instance UUID.
    pub product_instance_identifier: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Software version.
    pub software_version: Option<String>,
    /// Software tag.
    pub software_tag: Option<String>,
    /// When.
    pub last_contact_at: Option<DateTime<Utc>>,
    /// From where.
    pub source_address: Option<String>,
    /// Stamp.
    pub updated_at: DateTime<Utc>,
}

/// Identifies a device within an account.
#[derive(Debug, Clone, Copy)]
pub struct UdiKey<'a> {
    /// The account.
    pub account_id: AccountId,
    /// UDI product id.
    pub pid: &'a str,
    /// UDI serial number.
    pub serial: &'a str,
}

/// Updates a known device; `None` when the account has no device with that UDI.
pub async fn touch_known(
    conn: &mut AsyncPgConnection,
    key: UdiKey<'_>,
    contact: &DeviceContact,
) -> Result<Option<ProductInstanceId>, DbError> {
    Ok(diesel::update(
        product_instances::table
            .filter(product_instances::account_id.eq(key.account_id))
            .filter(product_instances::udi_pid.eq(key.pid))
            .filter(product_instances::udi_serial_number.eq(key.serial)),
    )
    .set(contact)
    .returning(product_instances::id)
    .get_result(conn)
    .await
    .optional()?)
}

/// Creates the device in `lva` or, if the account already knows it, updates it (its LVA is kept:
/// moving a device between LVAs is an explicit transfer). A device first seen while the tenant
/// has NAT support on is marked behind NAT.
pub async fn upsert_from_contact(
    conn: &mut AsyncPgConnection,
    key: UdiKey<'_>,
    lva: LvaId,
    contact: &DeviceContact,
    behind_nat: bool,
    now: DateTime<Utc>,
) -> Result<ProductInstanceId, DbError> {
    let new = NewProductInstance {
        id: ProductInstanceId::new(),
        account_id: key.account_id,
        lva_id: lva,
        udi_pid: key.pid,
        udi_serial_number: key.serial,
        sudi: &contact.sudi,
        product_instance_identifier: contact.product_instance_identifier.as_deref(),
        hostname: contact.hostname.as_deref(),
        software_version: contact.software_version.as_deref(),
        software_tag: contact.software_tag.as_deref(),
        connect_method: ConnectMethod::Push,
        last_contact_at: contact.last_contact_at,
        source_address: contact.source_address.as_deref(),
        created_at: now,
        updated_at: now,
        behind_nat,
    };
    Ok(diesel::insert_into(product_instances::table)
        .values(&new)
        .on_conflict((
            product_instances::account_id,
            product_instances::udi_pid,
            product_instances::udi_serial_number,
        ))
        .do_update()
        .set(contact)
        .returning(product_instances::id)
        .get_result(conn)
        .await?)
}

/// A device by UDI within an account.
pub async fn find_by_udi(
    conn: &mut AsyncPgConnection,
    key: UdiKey<'_>,
) -> Result<Option<ProductInstance>, DbError> {
    Ok(product_instances::table
        .filter(product_instances::account_id.eq(key.account_id))
        .filter(product_instances::udi_pid.eq(key.pid))
        .filter(product_instances::udi_serial_number.eq(key.serial))
        .select(ProductInstance::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// A device by id within an account (another account's id is not found).
pub async fn find(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    id: ProductInstanceId,
) -> Result<ProductInstance, DbError> {
    Ok(product_instances::table
        .filter(product_instances::account_id.eq(account))
        .filter(product_instances::id.eq(id))
        .select(ProductInstance::as_select())
        .first(conn)
        .await?)
}

/// The devices of an account, by UDI.
pub async fn list(
    conn: &mut AsyncPgConnection,
    account: AccountId,
) -> Result<Vec<ProductInstance>, DbError> {
    Ok(product_instances::table
        .filter(product_instances::account_id.eq(account))
        .order((
            product_instances::udi_pid,
            product_instances::udi_serial_number,
        ))
        .select(ProductInstance::as_select())
        .load(conn)
        .await?)
}

/// One member of an HA set.
#[derive(Debug, Clone, Insertable, Queryable, Selectable)]
#[diesel(table_name = pi_ha_members, check_for_backend(diesel::pg::Pg))]
pub struct HaMemberRow {
    /// Account.
    pub account_id: AccountId,
    /// The PI (the set's active).
    pub pi_id: ProductInstanceId,
    /// `Active`, `Standby` or `Member`.
    pub role: String,
    /// Member UDI product id.
    pub udi_pid: String,
    /// Member UDI serial.
    pub udi_serial_number: String,
    /// When reported.
    pub updated_at: DateTime<Utc>,
}

/// Replaces the HA set of a PI with what the device last reported.
pub async fn replace_ha_members(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
    members: &[HaMemberRow],
) -> Result<(), DbError> {
    diesel::delete(
        pi_ha_members::table
            .filter(pi_ha_members::account_id.eq(account))
            .filter(pi_ha_members::pi_id.eq(pi)),
    )
    .execute(conn)
    .await?;
    if !members.is_empty() {
        diesel::insert_into(pi_ha_members::table)
            .values(members)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The HA set of a PI.
pub async fn ha_members(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    pi: ProductInstanceId,
) -> Result<Vec<HaMemberRow>, DbError> {
    Ok(pi_ha_members::table
        .filter(pi_ha_members::account_id.eq(account))
        .filter(pi_ha_members::pi_id.eq(pi))
        .order((pi_ha_members::role, pi_ha_members::udi_serial_number))
        .select(HaMemberRow::as_select())
        .load(conn)
        .await?)
}

/// Keeps the trust requests of a device's latest usage report until a CSSM sync forwards them.
pub async fn set_trust_requests(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
    requests: &[Value],
) -> Result<(), DbError> {
    diesel::update(product_instances::table.find(pi))
        .set((
            product_instances::trust_requests.eq(Some(Value::Array(requests.to_vec()))),
            product_instances::trust_forwarded_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Trust requests of these PIs not yet forwarded to CSSM.
pub async fn pending_trust_requests(
    conn: &mut AsyncPgConnection,
    pis: &[ProductInstanceId],
) -> Result<Vec<(ProductInstanceId, Value)>, DbError> {
    Ok(product_instances::table
        .filter(product_instances::id.eq_any(pis))
        .filter(product_instances::trust_forwarded_at.is_null())
        .filter(product_instances::trust_requests.is_not_null())
        .select((
            product_instances::id,
            product_instances::trust_requests.assume_not_null(),
        ))
        .load(conn)
        .await?)
}

/// Records that these trust requests went to CSSM. A PI whose device sent new requests
/// meanwhile keeps them pending for the next sync.
pub async fn mark_trust_forwarded(
    conn: &mut AsyncPgConnection,
    sent: &[(ProductInstanceId, Value)],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    for (pi, requests) in sent {
        diesel::update(
            product_instances::table
                .find(pi)
                .filter(product_instances::trust_requests.eq(requests)),
        )
        .set(product_instances::trust_forwarded_at.eq(now))
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A PI that an HA set's report moved into the set as a non-reporting member.
#[derive(Debug, Clone, QueryableByName)]
pub struct Joined {
    /// The PI.
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: ProductInstanceId,
    /// It reported for itself (or its own set) until now: the reporting role moved away from it.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub was_reporting: bool,
}

/// Makes `active` the PI that reports for its HA set: it reports from now on, and every other
/// PI of the account whose UDI is in `members` becomes a member whose usage is not counted.
/// Returns the PIs that joined, and whether `active` was a member before (a switchover).
pub async fn take_reporting_role(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    active: ProductInstanceId,
    members: &[(String, String)],
) -> Result<(Vec<Joined>, bool), DbError> {
    use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
    let was_member = diesel::update(
        product_instances::table
            .find(active)
            .filter(product_instances::ha_active_pi.is_not_null()),
    )
    .set(product_instances::ha_active_pi.eq(None::<ProductInstanceId>))
    .execute(conn)
    .await?
        > 0;
    let (pids, serials): (Vec<String>, Vec<String>) = members.iter().cloned().unzip();
    let joined = diesel::sql_query(
        "WITH m AS (SELECT * FROM unnest($3::text[], $4::text[]) AS m(pid, serial)),
              old AS (SELECT p.id, p.ha_active_pi FROM product_instances p
                        JOIN m ON m.pid = p.udi_pid AND m.serial = p.udi_serial_number
                       WHERE p.account_id = $1 AND p.id <> $2
                         AND p.ha_active_pi IS DISTINCT FROM $2
                       ORDER BY p.id FOR UPDATE OF p)
         UPDATE product_instances p SET ha_active_pi = $2 FROM old WHERE p.id = old.id
         RETURNING p.id, old.ha_active_pi IS NULL AS was_reporting",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<SqlUuid, _>(active)
    .bind::<Array<Text>, _>(&pids)
    .bind::<Array<Text>, _>(&serials)
    .load(conn)
    .await?;
    // Units the set no longer names report (and count) on their own again.
    diesel::sql_query(
        "UPDATE product_instances p SET ha_active_pi = NULL
          WHERE p.account_id = $1 AND p.ha_active_pi = $2
            AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS m(pid, serial)
                             WHERE m.pid = p.udi_pid AND m.serial = p.udi_serial_number)",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<SqlUuid, _>(active)
    .bind::<Array<Text>, _>(pids)
    .bind::<Array<Text>, _>(serials)
    .execute(conn)
    .await?;
    Ok((joined, was_member))
}

/// A device that reports usage for itself alone: if it was a member of another PI's set, it
/// leaves that set (and its member list) and counts again. Returns whether it was a member.
pub async fn report_alone(
    conn: &mut AsyncPgConnection,
    pi: ProductInstanceId,
) -> Result<bool, DbError> {
    let row: Option<(Option<ProductInstanceId>, Option<String>, Option<String>)> =
        product_instances::table
            .find(pi)
            .select((
                product_instances::ha_active_pi,
                product_instances::udi_pid,
                product_instances::udi_serial_number,
            ))
            .first(conn)
            .await
            .optional()?;
    let Some((Some(active), Some(pid), Some(serial))) = row else {
        return Ok(false);
    };
    diesel::delete(
        pi_ha_members::table
            .filter(pi_ha_members::pi_id.eq(active))
            .filter(pi_ha_members::udi_pid.eq(&pid))
            .filter(pi_ha_members::udi_serial_number.eq(&serial)),
    )
    .execute(conn)
    .await?;
    diesel::update(product_instances::table.find(pi))
        .set(product_instances::ha_active_pi.eq(None::<ProductInstanceId>))
        .execute(conn)
        .await?;
    Ok(true)
}
