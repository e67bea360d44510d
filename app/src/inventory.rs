//! Inventory input: a product instance as an operator describes it (one in the admin API, or a
//! CSV file of many), checked into what the inventory stores. [`NewPi::parse`] holds every rule
//! of a description and is pure; [`add`] and [`import_csv`] resolve the LVA, seal the
//! credentials and apply it (a CSV file all or nothing, every bad row named).

use std::io::Read;

use chrono::{DateTime, Utc};
use outpost_core::secrets::{CredentialKey, Credentials};
use outpost_core::udi::Sudi;
use outpost_db::accounts::{self, LocalVirtualAccount};
use outpost_db::enums::{ConnectMethod, EventResult};
use outpost_db::events::{self, NewEvent};
use outpost_db::inventory::{self, ImportError, ManagedPi, RowError};
use outpost_db::{AccountId, AsyncPgConnection, ProductInstanceId};
use serde::Deserialize;
use serde_json::json;

use crate::error::{AppError, AppResult, Code};
use crate::input::{CsvRow as CsvLine, check_text, csv_rows};

/// Columns of the CSV template, import and export, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "udi_pid",
    "udi_serial_number",
    "hostname",
    "host",
    "port",
    "connect_method",
    "username",
    "password",
    "lva",
    "smart_account",
    "virtual_account",
    "behind_nat",
    "plain_http",
];
/// Columns the export adds for reading; an import accepts and ignores them.
pub const CSV_INFORMATIONAL: &[&str] = &["last_contact_at", "software_version"];
/// Most rows one import file may hold.
pub const MAX_IMPORT_ROWS: usize = 200_000;

/// A product instance as an operator describes it.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PiInput {
    /// UDI product id (required for push devices).
    pub udi_pid: Option<String>,
    /// UDI serial number.
    pub udi_serial_number: Option<String>,
    /// Hostname to show until the device reports its own.
    pub hostname: Option<String>,
    /// Host Outpost pulls from (required for rest, restconf, netconf).
    pub host: Option<String>,
    /// Port, when not the method's default.
    pub port: Option<i32>,
    /// `push` (default), `rest`, `restconf` or `netconf`.
    pub connect_method: Option<String>,
    /// Login for pulling; stored sealed, never shown again.
    pub username: Option<String>,
    /// Password for pulling.
    pub password: Option<String>,
    /// LVA number, default 1.
    pub lva: Option<i32>,
    /// Smart Account of this PI's usage, when not its LVA's.
    pub smart_account: Option<String>,
    /// Virtual Account of this PI's usage.
    pub virtual_account: Option<String>,
    /// Behind NAT: identified by UDI only, never pulled.
    pub behind_nat: Option<bool>,
    /// Pull a `rest` or `restconf` device over plain HTTP instead of HTTPS (its credentials
    /// then travel in clear); false for a new device when left out, unchanged for a known one.
    pub plain_http: Option<bool>,
}

/// A checked description: what the inventory stores, once the LVA number is resolved and the
/// credentials sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPi {
    /// UDI (PID, serial), if given.
    pub udi: Option<(String, String)>,
    /// Hostname to show.
    pub hostname: Option<String>,
    /// Host to pull from.
    pub host: Option<String>,
    /// Port.
    pub port: Option<i32>,
    /// How Outpost reaches it.
    pub connect_method: ConnectMethod,
    /// Plain HTTP for rest/restconf; `None` keeps what is stored.
    pub plain_http: Option<bool>,
    /// Login and password for pulling; `None` keeps what is stored.
    pub credentials: Option<(String, String)>,
    /// LVA number.
    pub lva: i32,
    /// Own SA/VA mapping.
    pub mapping: Option<(String, String)>,
    /// Behind NAT.
    pub behind_nat: bool,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A connect method by name.
pub fn parse_method(text: &str) -> Result<ConnectMethod, String> {
    text.trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| format!("connect_method '{text}' is not push, rest, restconf or netconf"))
}

fn check_host(host: &str) -> Result<(), String> {
    let ok = host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(format!("host '{host}' is not a host name or an IP address"))
    }
}

/// Two fields that go together: both or neither.
fn pair(
    a: (&str, &Option<String>),
    b: (&str, &Option<String>),
) -> Result<Option<(String, String)>, String> {
    match (non_empty(a.1), non_empty(b.1)) {
        (Some(x), Some(y)) => Ok(Some((x, y))),
        (None, None) => Ok(None),
        _ => Err(format!("{} and {} go together", a.0, b.0)),
    }
}

impl NewPi {
    /// Checks a description; the message names the field at fault.
    pub fn parse(input: &PiInput) -> Result<NewPi, String> {
        let udi = pair(
            ("udi_pid", &input.udi_pid),
            ("udi_serial_number", &input.udi_serial_number),
        )?;
        if let Some((pid, sn)) = &udi {
            Sudi::new(pid.clone(), sn.clone())
                .validate()
                .map_err(|e| e.to_string())?;
        }
        let method = match non_empty(&input.connect_method) {
            Some(m) => parse_method(&m)?,
            None => ConnectMethod::Push,
        };
        let host = non_empty(&input.host);
        if let Some(host) = &host {
            check_host(host)?;
        }
        if let Some(port) = input.port
            && !(1..=65535).contains(&port)
        {
            return Err(format!("port {port} is not between 1 and 65535"));
        }
        let behind_nat = input.behind_nat.unwrap_or(false);
        let plain_http = Self::plain_http(method, input.plain_http)?;
        Self::check_reach(method, udi.is_some(), host.is_some(), behind_nat)?;
        let hostname = non_empty(&input.hostname);
        if let Some(h) = &hostname {
            check_text("hostname", h, 255)?;
        }
        let mapping = pair(
            ("smart_account", &input.smart_account),
            ("virtual_account", &input.virtual_account),
        )?;
        if let Some((sa, va)) = &mapping {
            check_text("smart_account", sa, 200)?;
            check_text("virtual_account", va, 200)?;
        }
        Ok(NewPi {
            udi,
            hostname,
            host,
            port: input.port,
            connect_method: method,
            plain_http,
            credentials: Self::credentials(input)?,
            lva: input.lva.unwrap_or(1),
            mapping,
            behind_nat,
        })
    }

    /// Left out, `plain_http` stays as stored for an HTTP device; any other method has no HTTP.
    fn plain_http(method: ConnectMethod, asked: Option<bool>) -> Result<Option<bool>, String> {
        let speaks_http = matches!(method, ConnectMethod::Rest | ConnectMethod::Restconf);
        if asked == Some(true) && !speaks_http {
            return Err(format!(
                "plain_http is for rest and restconf devices; {method} does not use HTTP"
            ));
        }
        Ok(if speaks_http { asked } else { Some(false) })
    }

    /// A push device needs its UDI; a pulled one a host, and never behind NAT.
    fn check_reach(
        method: ConnectMethod,
        has_udi: bool,
        has_host: bool,
        behind_nat: bool,
    ) -> Result<(), String> {
        match method {
            ConnectMethod::Push if !has_udi => {
                Err("a push device needs udi_pid and udi_serial_number".into())
            }
            ConnectMethod::Push => Ok(()),
            _ if !has_host => Err(format!("connect_method {method} needs a host to pull from")),
            _ if behind_nat => {
                Err("a product instance behind NAT is never pulled; use connect_method push".into())
            }
            _ => Ok(()),
        }
    }

    fn credentials(input: &PiInput) -> Result<Option<(String, String)>, String> {
        let password = input.password.as_deref().filter(|p| !p.is_empty());
        match (non_empty(&input.username), password) {
            (Some(username), Some(password)) => {
                check_text("username", &username, 128)?;
                if password.len() > 256 || password.contains('\0') {
                    return Err("password must be at most 256 characters".into());
                }
                Ok(Some((username, password.to_owned())))
            }
            (None, None) => Ok(None),
            _ => Err("username and password go together".into()),
        }
    }

    /// What the inventory stores: the LVA found among the account's, credentials sealed with
    /// the credentials key (bound to the account).
    pub fn into_managed(
        self,
        line: usize,
        lvas: &[LocalVirtualAccount],
        key: &CredentialKey,
        account: AccountId,
    ) -> Result<ManagedPi, String> {
        let lva = lvas
            .iter()
            .find(|l| l.number == self.lva)
            .ok_or_else(|| format!("local virtual account {} does not exist", self.lva))?;
        let credentials = match self.credentials {
            Some((username, password)) => Some(
                key.seal(&Credentials { username, password }, account.0.as_bytes())
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        Ok(ManagedPi {
            line,
            udi: self.udi,
            hostname: self.hostname,
            host: self.host,
            port: self.port,
            connect_method: self.connect_method,
            plain_http: self.plain_http,
            credentials,
            lva_id: lva.id,
            mapping: self.mapping,
            behind_nat: self.behind_nat,
        })
    }
}

/// The refusal of a file whose rows cannot be imported: the first few in the message, up to a
/// thousand in `details.rows`.
pub fn rows_refused(errors: Vec<RowError>) -> AppError {
    let message = format!(
        "{} row(s) cannot be imported, so nothing was: {}",
        errors.len(),
        errors
            .iter()
            .take(5)
            .map(|e| format!("line {}: {}", e.line, e.reason))
            .collect::<Vec<_>>()
            .join("; ")
    );
    AppError::Refused {
        code: Code::InvalidRows,
        message,
        details: Some(json!({
            "rows": errors.iter().take(1000).collect::<Vec<_>>(),
            "row_error_count": errors.len(),
        })),
    }
}

/// What adding or importing did.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Applied {
    /// Product instances created.
    pub created: usize,
    /// Existing ones updated.
    pub updated: usize,
    /// Their ids, in the order given.
    #[schema(value_type = Vec<uuid::Uuid>)]
    pub ids: Vec<ProductInstanceId>,
}

async fn apply(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    rows: Vec<ManagedPi>,
    now: DateTime<Utc>,
) -> AppResult<Applied> {
    match inventory::import(conn, account, rows, now).await {
        Ok(outcome) => Ok(Applied {
            created: outcome.created,
            updated: outcome.updated,
            ids: outcome.ids,
        }),
        Err(ImportError::Rows(errors)) => Err(rows_refused(errors)),
        Err(ImportError::Db(e)) => Err(e.into()),
    }
}

async fn record(
    conn: &mut AsyncPgConnection,
    account: AccountId,
    actor: &str,
    action: &str,
    detail: serde_json::Value,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let event = NewEvent::account(account, actor, action, EventResult::Ok, detail, now);
    events::record(conn, &event).await?;
    Ok(())
}

/// Adds one product instance, or updates the one with its UDI or host. A clash with another
/// PI is a `conflict`.
pub async fn add(
    conn: &mut AsyncPgConnection,
    key: &CredentialKey,
    account: AccountId,
    input: &PiInput,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<Applied> {
    let lvas = accounts::list_lvas(conn, account).await?;
    let row = NewPi::parse(input)
        .and_then(|pi| pi.into_managed(1, &lvas, key, account))
        .map_err(AppError::invalid)?;
    let applied = apply(conn, account, vec![row], now)
        .await
        .map_err(|e| match e {
            AppError::Refused {
                code: Code::InvalidRows,
                details,
                ..
            } => {
                let reason = details
                    .as_ref()
                    .and_then(|d| d["rows"][0]["reason"].as_str())
                    .unwrap_or("it clashes with another product instance")
                    .to_owned();
                AppError::refused(Code::Conflict, reason)
            }
            other => other,
        })?;
    let detail = json!({ "id": applied.ids.first(), "udi_pid": input.udi_pid, "udi_serial_number": input.udi_serial_number, "host": input.host, "created": applied.created == 1 });
    record(conn, account, actor, "product_instance.add", detail, now).await?;
    Ok(applied)
}

/// One CSV row, every column as text.
#[derive(Debug, Default, Deserialize)]
struct CsvRow {
    udi_pid: Option<String>,
    udi_serial_number: Option<String>,
    hostname: Option<String>,
    host: Option<String>,
    port: Option<String>,
    connect_method: Option<String>,
    username: Option<String>,
    password: Option<String>,
    lva: Option<String>,
    smart_account: Option<String>,
    virtual_account: Option<String>,
    behind_nat: Option<String>,
    /// Optional: files made from an older template have no such column.
    plain_http: Option<String>,
}

/// A yes/no CSV cell: true, yes, 1 or false, no, 0 (any case); empty is `None`.
fn csv_flag(column: &str, cell: &Option<String>) -> Result<Option<bool>, String> {
    match non_empty(cell).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if matches!(v.as_str(), "true" | "yes" | "1") => Ok(Some(true)),
        Some(v) if matches!(v.as_str(), "false" | "no" | "0") => Ok(Some(false)),
        Some(v) => Err(format!("{column} '{v}' is not true or false")),
    }
}

fn csv_number(column: &str, cell: &Option<String>, what: &str) -> Result<Option<i32>, String> {
    non_empty(cell)
        .map(|v| {
            v.parse::<i32>()
                .map_err(|_| format!("{column} '{v}' is not {what}"))
        })
        .transpose()
}

impl CsvRow {
    fn input(self) -> Result<PiInput, String> {
        Ok(PiInput {
            port: csv_number("port", &self.port, "a number")?,
            lva: csv_number("lva", &self.lva, "an LVA number")?,
            behind_nat: csv_flag("behind_nat", &self.behind_nat)?,
            plain_http: csv_flag("plain_http", &self.plain_http)?,
            udi_pid: self.udi_pid,
            udi_serial_number: self.udi_serial_number,
            hostname: self.hostname,
            host: self.host,
            connect_method: self.connect_method,
            username: self.username,
            password: self.password,
            smart_account: self.smart_account,
            virtual_account: self.virtual_account,
        })
    }
}

/// Reads an inventory CSV file into descriptions, one per row with its line number. Refused
/// when the header has unknown columns or the file more than [`MAX_IMPORT_ROWS`] rows.
pub fn read_csv(file: impl Read) -> AppResult<Vec<CsvLine<PiInput>>> {
    let rows = csv_rows::<CsvRow>(file, MAX_IMPORT_ROWS, |headers| {
        let unknown: Vec<&str> = headers
            .iter()
            .filter(|h| !CSV_COLUMNS.contains(h) && !CSV_INFORMATIONAL.contains(h))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(AppError::invalid(format!(
            "unknown CSV column(s) {}; the template has: {}",
            unknown.join(", "),
            CSV_COLUMNS.join(",")
        )))
    })?;
    Ok(rows
        .into_iter()
        .map(|(line, row)| (line, row.and_then(CsvRow::input)))
        .collect())
}

/// Imports product instances from a CSV file (the template's columns): every row is checked
/// first; one bad row and nothing is imported, and the refusal lists each bad row, with the
/// rows that are fine alone but clash with each other or the inventory, so one round of fixes
/// is enough.
pub async fn import_csv(
    conn: &mut AsyncPgConnection,
    key: &CredentialKey,
    account: AccountId,
    file: impl Read,
    actor: &str,
    now: DateTime<Utc>,
) -> AppResult<Applied> {
    let lvas = accounts::list_lvas(conn, account).await?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (line, input) in read_csv(file)? {
        let checked = input
            .and_then(|input| NewPi::parse(&input))
            .and_then(|pi| pi.into_managed(line, &lvas, key, account));
        match checked {
            Ok(row) => rows.push(row),
            Err(reason) => errors.push(RowError { line, reason }),
        }
    }
    if !errors.is_empty() {
        let (clashes, _) = inventory::check(conn, account, &rows).await?;
        errors.extend(clashes);
        errors.sort_by_key(|e| e.line);
        return Err(rows_refused(errors));
    }
    if rows.is_empty() {
        return Err(AppError::invalid("the file has no rows below its header"));
    }
    let count = rows.len();
    let applied = apply(conn, account, rows, now).await?;
    let detail = json!({ "rows": count, "created": applied.created, "updated": applied.updated });
    record(conn, account, actor, "product_instance.import", detail, now).await?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pi(fields: serde_json::Value) -> Result<NewPi, String> {
        NewPi::parse(&serde_json::from_value(fields).unwrap())
    }

    #[test]
    fn descriptions_are_checked_field_by_field() {
        let refused: [(serde_json::Value, &str); 12] = [
            (
                json!({}),
                "a push device needs udi_pid and udi_serial_number",
            ),
            (
                json!({ "udi_pid": "C9300" }),
                "udi_pid and udi_serial_number go together",
            ),
            (
                json!({ "udi_pid": "C9300", "udi_serial_number": "S1", "connect_method": "telnet" }),
                "connect_method 'telnet' is not push, rest, restconf or netconf",
            ),
            (
                json!({ "connect_method": "rest" }),
                "connect_method rest needs a host to pull from",
            ),
            (
                json!({ "host": "10.0.0.1", "connect_method": "netconf", "behind_nat": true }),
                "a product instance behind NAT is never pulled; use connect_method push",
            ),
            (
                json!({ "host": "a b", "connect_method": "rest" }),
                "host 'a b' is not a host name or an IP address",
            ),
            (
                json!({ "host": "h", "connect_method": "rest", "port": 0 }),
                "port 0 is not between 1 and 65535",
            ),
            (
                json!({ "host": "h", "connect_method": "netconf", "plain_http": true }),
                "plain_http is for rest and restconf devices; netconf does not use HTTP",
            ),
            (
                json!({ "host": "h", "connect_method": "rest", "username": "u" }),
                "username and password go together",
            ),
            (
                json!({ "host": "h", "connect_method": "rest", "username": "u", "password": "p\u{0}" }),
                "password must be at most 256 characters",
            ),
            (
                json!({ "host": "h", "connect_method": "rest", "smart_account": "SA" }),
                "smart_account and virtual_account go together",
            ),
            (
                json!({ "host": "h", "connect_method": "rest", "hostname": "x\u{7}" }),
                "hostname must be at most 255 characters without control characters",
            ),
        ];
        for (fields, message) in refused {
            assert_eq!(pi(fields.clone()).unwrap_err(), message, "{fields}");
        }
    }

    #[test]
    fn a_good_description_keeps_what_it_leaves_out() {
        let rest = pi(json!({ "host": " 10.0.0.1 ", "connect_method": "REST", "username": "u", "password": "p", "lva": 2 }))
            .unwrap();
        assert_eq!(rest.host.as_deref(), Some("10.0.0.1"));
        assert_eq!(rest.connect_method, ConnectMethod::Rest);
        assert_eq!(rest.plain_http, None, "left out: stays as stored");
        assert_eq!(rest.credentials, Some(("u".into(), "p".into())));
        assert_eq!(rest.lva, 2);
        let push = pi(json!({ "udi_pid": "C9300-24UX", "udi_serial_number": "FCW1" })).unwrap();
        assert_eq!(push.connect_method, ConnectMethod::Push);
        assert_eq!(push.plain_http, Some(false));
        assert_eq!(push.lva, 1);
        assert_eq!(push.credentials, None);
    }

    #[test]
    fn csv_rows_are_read_with_their_line_numbers() {
        let text = "\u{feff}udi_pid,udi_serial_number,port,behind_nat\nC9300,S1,22,yes\nC9300,S2,x,\nC9300,S3,,maybe\n";
        let rows = read_csv(text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 3);
        let first = rows[0].1.as_ref().unwrap();
        assert_eq!(
            (rows[0].0, first.port, first.behind_nat),
            (2, Some(22), Some(true))
        );
        assert_eq!(rows[1].1.as_ref().unwrap_err(), "port 'x' is not a number");
        assert_eq!(
            rows[2].1.as_ref().unwrap_err(),
            "behind_nat 'maybe' is not true or false"
        );
        let unknown = read_csv("udi_pid,colour\n".as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with("unknown CSV column(s) colour;"),
            "{unknown}"
        );
    }
}
