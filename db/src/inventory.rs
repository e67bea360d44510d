//! The inventory ("SL Using Policy"): product instances of an account listed with search,
//! filters, sorting and keyset pagination that stays fast at a million PIs, and the changes an
//! operator makes to it (add, bulk import, transfer between LVAs, remove).
//!
//! Each sort order has an index ending in `id` (migration `tenancy`); a page continues after the
//! last row's (sort key, id), so deep pages cost what the first one does. `OFFSET` paging is
//! offered too, for the contract's `page=` parameter, and degrades with depth as it must.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};

use crate::enums::ConnectMethod;
use crate::ids::{AccountId, LvaId, ProductInstanceId};
use crate::pool::DbError;
use crate::schema::{product_instances, rum_reports};

/// The text the search box matches (substring, case-insensitive; trigram-indexed).
const SEARCH_TEXT: &str = "(coalesce(p.udi_pid, '') || ' ' || coalesce(p.udi_serial_number, '') || ' ' || coalesce(p.hostname, '') || ' ' || coalesce(p.host, ''))";

/// Columns of a list row.
const ROW_COLUMNS: &str = "p.id, p.udi_pid, p.udi_serial_number, p.hostname, p.host, p.port, \
    p.connect_method, p.plain_http, p.software_version, p.last_contact_at, p.behind_nat, \
    p.smart_account, p.virtual_account, p.credentials IS NOT NULL AS has_credentials, \
    p.created_at, l.number AS lva_number, \
    (SELECT count(*) FROM alerts a WHERE a.account_id = p.account_id AND a.pi_id = p.id \
     AND a.cleared_at IS NULL) AS open_alerts";

/// Orders the inventory can be listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    /// By UDI (PID, then serial number).
    #[default]
    Udi,
    /// By hostname.
    Hostname,
    /// By last contact (never contacted first).
    LastContact,
}

impl SortKey {
    /// The key expressions, matching an index after `account_id`.
    fn columns(self) -> &'static [&'static str] {
        match self {
            SortKey::Udi => &[
                "coalesce(p.udi_pid, '')",
                "coalesce(p.udi_serial_number, '')",
            ],
            SortKey::Hostname => &["coalesce(p.hostname, '')"],
            SortKey::LastContact => &["coalesce(p.last_contact_at, '-infinity'::timestamptz)"],
        }
    }

    /// The key values of a row, as text (a cursor carries them).
    fn values(self, row: &InventoryRow) -> Vec<String> {
        match self {
            SortKey::Udi => vec![
                row.udi_pid.clone().unwrap_or_default(),
                row.udi_serial_number.clone().unwrap_or_default(),
            ],
            SortKey::Hostname => vec![row.hostname.clone().unwrap_or_default()],
            SortKey::LastContact => vec![
                row.last_contact_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "-infinity".into()),
            ],
        }
    }

    /// The SQL type a cursor value is cast to.
    fn cast(self) -> &'static str {
        match self {
            SortKey::LastContact => "::timestamptz",
            SortKey::Udi | SortKey::Hostname => "",
        }
    }
}

/// Which alerts a listed PI must (or must not) have open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertFilter {
    /// At least one open alert.
    Any,
    /// No open alert.
    None,
    /// An open alert of this kind.
    Kind(String),
}

/// What the inventory list shows.
#[derive(Debug, Clone, Default)]
pub struct InventoryQuery {
    /// Only this LVA.
    pub lva: Option<LvaId>,
    /// Substring of UDI, hostname or host.
    pub search: Option<String>,
    /// Alert condition.
    pub alert: Option<AlertFilter>,
    /// Only this connect method.
    pub connect_method: Option<ConnectMethod>,
    /// Only PIs whose last contact is before this time (or that never made contact).
    pub contact_before: Option<DateTime<Utc>>,
    /// Order.
    pub sort: SortKey,
    /// Newest / last first.
    pub descending: bool,
    /// Continue after this cursor (from the previous page's `next_cursor`).
    pub cursor: Option<Cursor>,
    /// Rows to skip (only without a cursor).
    pub offset: i64,
    /// Rows per page.
    pub limit: i64,
    /// Only these PIs (set by [`list`] when a search matches few enough to sort them whole).
    pub only_ids: Option<Vec<ProductInstanceId>>,
}

/// Where a page ends: the last row's sort key values and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort order it belongs to.
    sort: SortKey,
    /// Key values.
    keys: Vec<String>,
    /// Row id.
    id: ProductInstanceId,
}

impl Cursor {
    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a cursor back; `None` if it is not one of ours or belongs to another sort order.
    pub fn decode(text: &str, sort: SortKey) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let cursor: Cursor = serde_json::from_slice(&bytes).ok()?;
        // A forged cursor must not reach PostgreSQL as a bad timestamp or a NUL in text.
        let keys_ok = cursor.keys.iter().all(|k| match sort {
            SortKey::LastContact => k == "-infinity" || DateTime::parse_from_rfc3339(k).is_ok(),
            SortKey::Udi | SortKey::Hostname => !k.contains('\0'),
        });
        (cursor.sort == sort && cursor.keys.len() == sort.columns().len() && keys_ok)
            .then_some(cursor)
    }
}

/// One row of the inventory list.
#[derive(Debug, Clone, QueryableByName, Serialize, utoipa::ToSchema)]
pub struct InventoryRow {
    /// Id.
    #[diesel(sql_type = SqlUuid)]
    pub id: ProductInstanceId,
    /// UDI product id.
    #[diesel(sql_type = Nullable<Text>)]
    pub udi_pid: Option<String>,
    /// UDI serial number.
    #[diesel(sql_type = Nullable<Text>)]
    pub udi_serial_number: Option<String>,
    /// Hostname the device reported.
    #[diesel(sql_type = Nullable<Text>)]
    pub hostname: Option<String>,
    /// Host Outpost pulls from.
    #[diesel(sql_type = Nullable<Text>)]
    pub host: Option<String>,
    /// Port.
    #[diesel(sql_type = Nullable<Integer>)]
    pub port: Option<i32>,
    /// Push or a pull method.
    #[diesel(sql_type = Text)]
    pub connect_method: ConnectMethod,
    /// Pulled over plain HTTP rather than HTTPS.
    #[diesel(sql_type = Bool)]
    pub plain_http: bool,
    /// Software version.
    #[diesel(sql_type = Nullable<Text>)]
    pub software_version: Option<String>,
    /// Last exchange.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_contact_at: Option<DateTime<Utc>>,
    /// Behind NAT.
    #[diesel(sql_type = Bool)]
    pub behind_nat: bool,
    /// Own SA mapping.
    #[diesel(sql_type = Nullable<Text>)]
    pub smart_account: Option<String>,
    /// Own VA mapping.
    #[diesel(sql_type = Nullable<Text>)]
    pub virtual_account: Option<String>,
    /// Whether pull credentials are stored.
    #[diesel(sql_type = Bool)]
    pub has_credentials: bool,
    /// Added.
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// Number of its LVA.
    #[diesel(sql_type = Integer)]
    pub lva_number: i32,
    /// Open alerts.
    #[diesel(sql_type = BigInt)]
    pub open_alerts: i64,
}

/// A value bound into the inventory query.
#[derive(Debug, Clone)]
pub enum Bind {
    /// A uuid.
    Uuid(uuid::Uuid),
    /// Text.
    Text(String),
    /// A timestamp.
    Time(DateTime<Utc>),
    /// An integer.
    Int(i64),
    /// A list of uuids.
    Uuids(Vec<uuid::Uuid>),
}

/// The SQL of a filtered list (with `$n` placeholders) and its binds: kept apart so a test
/// can `EXPLAIN` exactly what the API runs.
#[derive(Debug, Clone)]
pub struct Sql {
    /// The statement.
    pub text: String,
    /// Its parameters, in order.
    pub binds: Vec<Bind>,
}

impl Sql {
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    /// The statement as a diesel query.
    pub fn query(
        &self,
        prefix: &str,
    ) -> BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
        let mut query = diesel::sql_query(format!("{prefix}{}", self.text)).into_boxed();
        for bind in &self.binds {
            query = match bind.clone() {
                Bind::Uuid(v) => query.bind::<SqlUuid, _>(v),
                Bind::Text(v) => query.bind::<Text, _>(v),
                Bind::Time(v) => query.bind::<Timestamptz, _>(v),
                Bind::Int(v) => query.bind::<BigInt, _>(v),
                Bind::Uuids(v) => query.bind::<Array<SqlUuid>, _>(v),
            };
        }
        query
    }
}

/// Escapes `%`, `_` and `\` so a search term matches literally inside `ILIKE`.
fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The WHERE clause shared by the list and its count.
fn conditions(sql: &mut Sql, account: AccountId, q: &InventoryQuery) -> String {
    let mut clauses = vec![format!(
        "p.account_id = {}",
        sql.bind(Bind::Uuid(account.0))
    )];
    if let Some(ids) = &q.only_ids {
        let p = sql.bind(Bind::Uuids(ids.iter().map(|id| id.0).collect()));
        clauses.push(format!("p.id = ANY({p}::uuid[])"));
    }
    if let Some(lva) = q.lva {
        clauses.push(format!("p.lva_id = {}", sql.bind(Bind::Uuid(lva.0))));
    }
    if let Some(term) = q.search.as_deref().filter(|t| !t.is_empty()) {
        let p = sql.bind(Bind::Text(like_pattern(term)));
        clauses.push(format!("{SEARCH_TEXT} ILIKE {p}"));
    }
    if let Some(method) = q.connect_method {
        let p = sql.bind(Bind::Text(method.as_str().into()));
        clauses.push(format!("p.connect_method = {p}"));
    }
    if let Some(before) = q.contact_before {
        let p = sql.bind(Bind::Time(before));
        clauses.push(format!(
            "coalesce(p.last_contact_at, '-infinity'::timestamptz) < {p}"
        ));
    }
    // `has_open_alert` (kept by a trigger on alerts) has a partial index; a kind is then
    // checked only on the PIs that have some alert.
    match &q.alert {
        None => {}
        Some(AlertFilter::Any) => clauses.push("p.has_open_alert".into()),
        Some(AlertFilter::None) => clauses.push("NOT p.has_open_alert".into()),
        Some(AlertFilter::Kind(kind)) => {
            let p = sql.bind(Bind::Text(kind.clone()));
            clauses.push(format!(
                "p.has_open_alert AND EXISTS (SELECT 1 FROM alerts a WHERE a.account_id = p.account_id \
                 AND a.pi_id = p.id AND a.cleared_at IS NULL AND a.kind = {p})"
            ));
        }
    }
    clauses.join(" AND ")
}

/// The list statement of one page.
pub fn list_sql(account: AccountId, q: &InventoryQuery) -> Sql {
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
    };
    let mut wheres = conditions(&mut sql, account, q);
    let columns = q.sort.columns();
    let keys = columns.join(", ");
    if let Some(cursor) = &q.cursor {
        let cast = q.sort.cast();
        let mut values: Vec<String> = cursor
            .keys
            .iter()
            .map(|v| format!("{}{cast}", sql.bind(Bind::Text(v.clone()))))
            .collect();
        values.push(format!("{}::uuid", sql.bind(Bind::Uuid(cursor.id.0))));
        let op = if q.descending { "<" } else { ">" };
        wheres.push_str(&format!(" AND ({keys}, p.id) {op} ({})", values.join(", ")));
    }
    let direction = if q.descending { " DESC" } else { "" };
    let order: Vec<String> = columns
        .iter()
        .chain(std::iter::once(&"p.id"))
        .map(|c| format!("{c}{direction}"))
        .collect();
    let limit = sql.bind(Bind::Int(q.limit));
    let offset = sql.bind(Bind::Int(if q.cursor.is_some() { 0 } else { q.offset }));
    sql.text = format!(
        "SELECT {ROW_COLUMNS} FROM product_instances p \
         JOIN local_virtual_accounts l ON l.id = p.lva_id \
         WHERE {wheres} ORDER BY {} LIMIT {limit} OFFSET {offset}",
        order.join(", ")
    );
    sql
}

/// One page of the inventory.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryPage {
    /// The rows.
    pub items: Vec<InventoryRow>,
    /// Cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Lists one page of an account's inventory.
pub async fn list(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    q: &InventoryQuery,
) -> Result<InventoryPage, DbError> {
    // One row more than asked tells whether another page follows.
    let mut probe = q.clone();
    probe.limit = q.limit.saturating_add(1);
    // A search is matched through the trigram index first. Walking the sort order's index and
    // testing each row would be as fast when matches are everywhere, but a rare term whose
    // matches all sort late (routers after switches) would be read row by row to the end.
    if probe.search.is_some() && probe.only_ids.is_none() {
        let mut sql = Sql {
            text: String::new(),
            binds: Vec::new(),
        };
        let wheres = conditions(&mut sql, account, &probe);
        let cap = sql.bind(Bind::Int(SEARCH_SORT_LIMIT + 1));
        sql.text = format!("SELECT p.id FROM product_instances p WHERE {wheres} LIMIT {cap}");
        let hits: Vec<IdRow> = sql.query("").load(conn).await?;
        if hits.len() as i64 <= SEARCH_SORT_LIMIT {
            probe.only_ids = Some(hits.into_iter().map(|h| h.id).collect());
        }
    }
    let mut items: Vec<InventoryRow> = list_sql(account, &probe).query("").load(conn).await?;
    let more = items.len() as i64 > q.limit;
    items.truncate(usize::try_from(q.limit).unwrap_or(0));
    let next_cursor = match items.last() {
        Some(last) if more => Some(
            Cursor {
                sort: q.sort,
                keys: q.sort.values(last),
                id: last.id,
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(InventoryPage { items, next_cursor })
}

/// Most search matches sorted whole (beyond, the sort order's index is walked).
const SEARCH_SORT_LIMIT: i64 = 5_000;

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = SqlUuid)]
    id: ProductInstanceId,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// How many PIs match the filters (cursor, sort and paging aside), counting no further than
/// `cap` when given: an exact count of a million rows costs a full index scan on every page,
/// while "more than 10,000" is what a person needs to refine the search.
pub async fn count(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    q: &InventoryQuery,
    cap: Option<i64>,
) -> Result<i64, DbError> {
    let mut sql = Sql {
        text: String::new(),
        binds: Vec::new(),
    };
    let wheres = conditions(&mut sql, account, q);
    sql.text = match cap {
        Some(cap) => {
            let limit = sql.bind(Bind::Int(cap));
            format!(
                "SELECT count(*) AS count FROM (SELECT 1 FROM product_instances p WHERE {wheres} LIMIT {limit}) capped"
            )
        }
        None => format!("SELECT count(*) AS count FROM product_instances p WHERE {wheres}"),
    };
    let row: Count = sql.query("").get_result(conn).await?;
    Ok(row.count)
}

/// A PI as an operator describes it (one API call or one CSV row).
#[derive(Debug, Clone)]
pub struct ManagedPi {
    /// CSV line number (1 for a single add), for error messages.
    pub line: usize,
    /// UDI (PID, serial), if known.
    pub udi: Option<(String, String)>,
    /// Hostname to show until the device reports its own.
    pub hostname: Option<String>,
    /// Host to pull from.
    pub host: Option<String>,
    /// Port.
    pub port: Option<i32>,
    /// How Outpost reaches it.
    pub connect_method: ConnectMethod,
    /// REST or RESTCONF over plain HTTP rather than HTTPS; `None` keeps what is stored (a
    /// file from an older template has no such column).
    pub plain_http: Option<bool>,
    /// Sealed credentials; `None` keeps what is stored.
    pub credentials: Option<Vec<u8>>,
    /// Target LVA.
    pub lva_id: LvaId,
    /// Own SA/VA mapping.
    pub mapping: Option<(String, String)>,
    /// Behind NAT.
    pub behind_nat: bool,
}

/// A row that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// CSV line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportOutcome {
    /// PIs created.
    pub created: usize,
    /// Existing PIs updated.
    pub updated: usize,
    /// Ids of the PIs, in row order.
    pub ids: Vec<ProductInstanceId>,
}

/// Why an import changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Some rows cannot be applied; nothing was.
    #[error("{} row(s) refused", .0.len())]
    Rows(Vec<RowError>),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for ImportError {
    fn from(e: diesel::result::Error) -> Self {
        ImportError::Db(DbError::Query(e))
    }
}

#[derive(QueryableByName)]
struct Existing {
    #[diesel(sql_type = SqlUuid)]
    id: ProductInstanceId,
    #[diesel(sql_type = Nullable<Text>)]
    udi_pid: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    udi_serial_number: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    host: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    port: Option<i32>,
}

#[derive(Insertable)]
#[diesel(table_name = product_instances)]
struct NewManaged {
    id: ProductInstanceId,
    account_id: AccountId,
    lva_id: LvaId,
    udi_pid: Option<String>,
    udi_serial_number: Option<String>,
    hostname: Option<String>,
    host: Option<String>,
    port: Option<i32>,
    connect_method: ConnectMethod,
    plain_http: bool,
    credentials: Option<Vec<u8>>,
    behind_nat: bool,
    smart_account: Option<String>,
    virtual_account: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Rows per INSERT statement (PostgreSQL allows 65535 parameters; 15 columns per row).
const INSERT_CHUNK: usize = 1000;

/// Remembers the first line a key was seen on; returns it when `line` repeats the key.
fn first_line<K: std::hash::Hash + Eq>(
    seen: &mut HashMap<K, usize>,
    key: K,
    line: usize,
) -> Option<usize> {
    match seen.entry(key) {
        std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(line);
            None
        }
    }
}

/// Checks rows against each other and the stored inventory without writing anything: the
/// refusals, and for each row the PI it would update (`None`: a new one).
pub async fn check(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    rows: &[ManagedPi],
) -> Result<(Vec<RowError>, Vec<Option<ProductInstanceId>>), DbError> {
    let pids: Vec<String> = rows
        .iter()
        .filter_map(|r| r.udi.as_ref().map(|u| u.0.clone()))
        .collect();
    let serials: Vec<String> = rows
        .iter()
        .filter_map(|r| r.udi.as_ref().map(|u| u.1.clone()))
        .collect();
    let hosts: Vec<String> = rows.iter().filter_map(|r| r.host.clone()).collect();
    let existing: Vec<Existing> = diesel::sql_query(
        "SELECT id, udi_pid, udi_serial_number, host, port FROM product_instances
             WHERE account_id = $1
               AND ((udi_pid, udi_serial_number) IN (SELECT * FROM unnest($2::text[], $3::text[]))
                    OR host = ANY($4))",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<Array<Text>, _>(&pids)
    .bind::<Array<Text>, _>(&serials)
    .bind::<Array<Text>, _>(&hosts)
    .load(conn)
    .await
    .map_err(DbError::from)?;
    let by_udi: HashMap<(String, String), ProductInstanceId> = existing
        .iter()
        .filter_map(|e| Some(((e.udi_pid.clone()?, e.udi_serial_number.clone()?), e.id)))
        .collect();
    let by_host: HashMap<(String, i32), ProductInstanceId> = existing
        .iter()
        .filter_map(|e| Some(((e.host.clone()?, e.port.unwrap_or(0)), e.id)))
        .collect();

    let mut errors = Vec::new();
    let mut seen_udi: HashMap<(String, String), usize> = HashMap::new();
    let mut seen_host: HashMap<(String, i32), usize> = HashMap::new();
    let mut targets: Vec<Option<ProductInstanceId>> = Vec::with_capacity(rows.len());
    for row in rows {
        let host_key = row.host.clone().map(|h| (h, row.port.unwrap_or(0)));
        if let Some(udi) = &row.udi
            && let Some(first) = first_line(&mut seen_udi, udi.clone(), row.line)
        {
            errors.push(RowError {
                line: row.line,
                reason: format!("UDI PID:{},SN:{} is also on line {first}", udi.0, udi.1),
            });
        }
        if let Some(key) = &host_key
            && let Some(first) = first_line(&mut seen_host, key.clone(), row.line)
        {
            errors.push(RowError {
                line: row.line,
                reason: format!("host {} is also on line {first}", key.0),
            });
        }
        let by_its_udi = row.udi.as_ref().and_then(|u| by_udi.get(u)).copied();
        let by_its_host = host_key.as_ref().and_then(|k| by_host.get(k)).copied();
        let target = match (&row.udi, by_its_udi, by_its_host) {
            (Some(_), found, Some(other)) if found != Some(other) => {
                errors.push(RowError {
                    line: row.line,
                    reason: format!(
                        "host {} already belongs to another product instance",
                        row.host.as_deref().unwrap_or_default()
                    ),
                });
                None
            }
            (Some(_), found, _) => found,
            (None, _, found) => found,
        };
        targets.push(target);
    }
    errors.sort_by_key(|e| e.line);
    Ok((errors, targets))
}

/// Adds or updates PIs, all or nothing. A row matches an existing PI by UDI, or by host and
/// port when it has no UDI; a matched PI keeps its stored credentials unless the row brings
/// new ones. Every row is checked ([`check`]) before anything is written.
pub async fn import(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    rows: Vec<ManagedPi>,
    now: DateTime<Utc>,
) -> Result<ImportOutcome, ImportError> {
    conn.transaction::<_, ImportError, _>(async |conn| {
        // Concurrent imports of one account would race on the same UDIs and hosts.
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('inventory:' || $1::text))")
            .bind::<Text, _>(account.to_string())
            .execute(conn)
            .await?;
        let (errors, targets) = check(conn, account, &rows).await?;
        if !errors.is_empty() {
            return Err(ImportError::Rows(errors));
        }
        let mut outcome = ImportOutcome::default();
        let mut inserts = Vec::new();
        let mut updates = Vec::new();
        for (row, target) in rows.into_iter().zip(targets) {
            let (smart_account, virtual_account) = row.mapping.clone().unzip();
            match target {
                Some(id) => {
                    updates.push((id, row));
                    outcome.updated += 1;
                    outcome.ids.push(id);
                }
                None => {
                    let id = ProductInstanceId::new();
                    let (udi_pid, udi_serial_number) = row.udi.clone().unzip();
                    inserts.push(NewManaged {
                        id,
                        account_id: account,
                        lva_id: row.lva_id,
                        udi_pid,
                        udi_serial_number,
                        hostname: row.hostname,
                        host: row.host,
                        port: row.port,
                        connect_method: row.connect_method,
                        plain_http: row.plain_http.unwrap_or(false),
                        credentials: row.credentials,
                        behind_nat: row.behind_nat,
                        smart_account,
                        virtual_account,
                        created_at: now,
                        updated_at: now,
                    });
                    outcome.created += 1;
                    outcome.ids.push(id);
                }
            }
        }
        for chunk in updates.chunks(INSERT_CHUNK) {
            update_chunk(conn, account, chunk, now).await?;
        }
        for chunk in inserts.chunks(INSERT_CHUNK) {
            diesel::insert_into(product_instances::table)
                .values(chunk)
                .execute(conn)
                .await?;
        }
        Ok(outcome)
    })
    .await
}

/// Updates matched PIs from their rows in one statement. Credentials and hostname are kept when
/// the row has none (an exported file carries neither password nor, always, a hostname).
async fn update_chunk(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    rows: &[(ProductInstanceId, ManagedPi)],
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    let ids: Vec<uuid::Uuid> = rows.iter().map(|(id, _)| id.0).collect();
    let lvas: Vec<uuid::Uuid> = rows.iter().map(|(_, r)| r.lva_id.0).collect();
    let hosts: Vec<Option<String>> = rows.iter().map(|(_, r)| r.host.clone()).collect();
    let ports: Vec<Option<i32>> = rows.iter().map(|(_, r)| r.port).collect();
    let methods: Vec<String> = rows
        .iter()
        .map(|(_, r)| r.connect_method.as_str().into())
        .collect();
    let nats: Vec<bool> = rows.iter().map(|(_, r)| r.behind_nat).collect();
    let sas: Vec<Option<String>> = rows
        .iter()
        .map(|(_, r)| r.mapping.clone().map(|m| m.0))
        .collect();
    let vas: Vec<Option<String>> = rows
        .iter()
        .map(|(_, r)| r.mapping.clone().map(|m| m.1))
        .collect();
    let credentials: Vec<Option<Vec<u8>>> =
        rows.iter().map(|(_, r)| r.credentials.clone()).collect();
    let hostnames: Vec<Option<String>> = rows.iter().map(|(_, r)| r.hostname.clone()).collect();
    let plain: Vec<Option<bool>> = rows.iter().map(|(_, r)| r.plain_http).collect();
    // A pinned certificate or host key belongs to the address it was seen at: a new host,
    // port, method or scheme is a new first contact (this is also how an admin re-pins a
    // replaced device).
    diesel::sql_query(
        "UPDATE product_instances p SET lva_id = v.lva_id, host = v.host, port = v.port,
                connect_method = v.connect_method,
                plain_http = coalesce(v.plain_http, p.plain_http),
                behind_nat = v.behind_nat,
                smart_account = v.smart_account, virtual_account = v.virtual_account,
                credentials = coalesce(v.credentials, p.credentials),
                hostname = coalesce(v.hostname, p.hostname),
                peer_fingerprint = CASE
                    WHEN (p.host, p.port, p.connect_method, p.plain_http)
                         IS NOT DISTINCT FROM (v.host, v.port, v.connect_method,
                                               coalesce(v.plain_http, p.plain_http))
                    THEN p.peer_fingerprint END,
                peer_fingerprint_at = CASE
                    WHEN (p.host, p.port, p.connect_method, p.plain_http)
                         IS NOT DISTINCT FROM (v.host, v.port, v.connect_method,
                                               coalesce(v.plain_http, p.plain_http))
                    THEN p.peer_fingerprint_at END,
                updated_at = $13
         FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::int4[], $6::text[], $7::bool[],
                     $8::text[], $9::text[], $10::bytea[], $11::text[], $12::bool[])
              AS v(id, lva_id, host, port, connect_method, behind_nat, smart_account,
                   virtual_account, credentials, hostname, plain_http)
         WHERE p.account_id = $1 AND p.id = v.id",
    )
    .bind::<SqlUuid, _>(account)
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<SqlUuid>, _>(&lvas)
    .bind::<Array<Nullable<Text>>, _>(&hosts)
    .bind::<Array<Nullable<Integer>>, _>(&ports)
    .bind::<Array<Text>, _>(&methods)
    .bind::<Array<Bool>, _>(&nats)
    .bind::<Array<Nullable<Text>>, _>(&sas)
    .bind::<Array<Nullable<Text>>, _>(&vas)
    .bind::<Array<Nullable<diesel::sql_types::Bytea>>, _>(&credentials)
    .bind::<Array<Nullable<Text>>, _>(&hostnames)
    .bind::<Array<Nullable<Bool>>, _>(&plain)
    .bind::<Timestamptz, _>(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves PIs to another LVA of the same account, all or none. Returns the ids that are not
/// the account's; nothing moved then.
pub async fn transfer(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    ids: &[ProductInstanceId],
    to: LvaId,
    now: DateTime<Utc>,
) -> Result<Vec<ProductInstanceId>, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let found: Vec<ProductInstanceId> = product_instances::table
            .filter(product_instances::account_id.eq(account))
            .filter(product_instances::id.eq_any(ids))
            .select(product_instances::id)
            .for_update()
            .load(conn)
            .await?;
        let missing: Vec<ProductInstanceId> = ids
            .iter()
            .filter(|id| !found.contains(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Ok(missing);
        }
        diesel::update(
            product_instances::table
                .filter(product_instances::account_id.eq(account))
                .filter(product_instances::id.eq_any(ids)),
        )
        .set((
            product_instances::lva_id.eq(to),
            product_instances::updated_at.eq(now),
        ))
        .execute(conn)
        .await?;
        Ok(Vec::new())
    })
    .await
}

/// How many of these ids are PIs of the account.
pub async fn count_existing(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    ids: &[ProductInstanceId],
) -> Result<i64, DbError> {
    Ok(product_instances::table
        .filter(product_instances::account_id.eq(account))
        .filter(product_instances::id.eq_any(ids))
        .count()
        .get_result(conn)
        .await?)
}

/// What a removal did, or why it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Removed this many PIs, dropping this many reports CSSM had not acknowledged (forced).
    Removed(usize, i64),
    /// Refused: this many reports are not acknowledged by CSSM yet.
    Unacknowledged(i64),
}

/// Removes PIs of an account with their reports, ACKs and alerts, unless CSSM has not
/// acknowledged some of their reports and `force` is off (those reports were acknowledged to
/// the device with `OK_POLL`). The PIs are locked first, so a report arriving meanwhile either
/// waits and is counted, or comes after the removal.
pub async fn remove(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    ids: &[ProductInstanceId],
    force: bool,
) -> Result<Removal, DbError> {
    conn.transaction::<_, DbError, _>(async |conn| {
        let _locked: Vec<ProductInstanceId> = product_instances::table
            .filter(product_instances::account_id.eq(account))
            .filter(product_instances::id.eq_any(ids))
            .order(product_instances::id)
            .select(product_instances::id)
            .for_update()
            .load(conn)
            .await?;
        let pending: i64 = rum_reports::table
            .filter(rum_reports::account_id.eq(account))
            .filter(rum_reports::pi_id.eq_any(ids))
            .filter(rum_reports::acked_at.is_null())
            .count()
            .get_result(conn)
            .await?;
        if pending > 0 && !force {
            return Ok(Removal::Unacknowledged(pending));
        }
        let removed = diesel::delete(
            product_instances::table
                .filter(product_instances::account_id.eq(account))
                .filter(product_instances::id.eq_any(ids)),
        )
        .execute(conn)
        .await?;
        Ok(Removal::Removed(removed, pending))
    })
    .await
}
