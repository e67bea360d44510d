//! The single `system_settings` row: switches changed at run time and secrets generated once.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::pool::DbError;
use crate::schema::system_settings;

/// Whether device validation is on for the whole Outpost.
pub async fn validate_device(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
    Ok(system_settings::table
        .select(system_settings::validate_device)
        .first(conn)
        .await?)
}

/// Turns device validation on or off.
pub async fn set_validate_device(conn: &mut AsyncPgConnection, on: bool) -> Result<(), DbError> {
    diesel::update(system_settings::table)
        .set((
            system_settings::validate_device.eq(on),
            system_settings::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether NAT support is on for the whole Outpost.
pub async fn nat_support(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
    Ok(system_settings::table
        .select(system_settings::nat_support)
        .first(conn)
        .await?)
}

/// Turns NAT support on or off.
pub async fn set_nat_support(conn: &mut AsyncPgConnection, on: bool) -> Result<(), DbError> {
    diesel::update(system_settings::table)
        .set((
            system_settings::nat_support.eq(on),
            system_settings::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The stored JWT secret, storing `candidate` first if none is set (the first node to start
/// wins; every node then shares the same secret).
pub async fn jwt_secret_or_init(
    conn: &mut AsyncPgConnection,
    candidate: &str,
) -> Result<String, DbError> {
    diesel::update(system_settings::table.filter(system_settings::jwt_secret.is_null()))
        .set(system_settings::jwt_secret.eq(candidate))
        .execute(conn)
        .await?;
    Ok(system_settings::table
        .select(system_settings::jwt_secret.assume_not_null())
        .first(conn)
        .await?)
}

/// The Outpost instance's private key (PKCS#8 PEM), storing `candidate` first if none is set.
pub async fn instance_key_or_init(
    conn: &mut AsyncPgConnection,
    candidate: &str,
) -> Result<String, DbError> {
    diesel::update(
        system_settings::table.filter(system_settings::instance_private_key_pem.is_null()),
    )
    .set(system_settings::instance_private_key_pem.eq(candidate))
    .execute(conn)
    .await?;
    Ok(system_settings::table
        .select(system_settings::instance_private_key_pem.assume_not_null())
        .first(conn)
        .await?)
}

/// The secrets of the `system_settings` row as stored (sealed, or in clear from before
/// secrets were sealed).
#[derive(Debug, Clone, Queryable)]
pub struct StoredSecrets {
    /// The access-token key, if made.
    pub jwt_secret: Option<String>,
    /// The instance private key, if made.
    pub instance_private_key_pem: Option<String>,
}

/// The secrets of the `system_settings` row.
pub async fn stored_secrets(conn: &mut AsyncPgConnection) -> Result<StoredSecrets, DbError> {
    Ok(system_settings::table
        .select((
            system_settings::jwt_secret,
            system_settings::instance_private_key_pem,
        ))
        .first(conn)
        .await?)
}

/// A secret column of `system_settings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretColumn {
    /// `jwt_secret`.
    JwtSecret,
    /// `instance_private_key_pem`.
    InstanceKey,
}

/// Replaces a secret's stored value, only if it still is `old` (two nodes sealing the same
/// value at once both succeed, once).
pub async fn replace_secret(
    conn: &mut AsyncPgConnection,
    column: SecretColumn,
    old: &str,
    new: &str,
) -> Result<(), DbError> {
    match column {
        SecretColumn::JwtSecret => {
            diesel::update(system_settings::table.filter(system_settings::jwt_secret.eq(old)))
                .set(system_settings::jwt_secret.eq(new))
                .execute(conn)
                .await?
        }
        SecretColumn::InstanceKey => {
            diesel::update(
                system_settings::table.filter(system_settings::instance_private_key_pem.eq(old)),
            )
            .set(system_settings::instance_private_key_pem.eq(new))
            .execute(conn)
            .await?
        }
    };
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Recovery {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    in_recovery: bool,
}

/// Whether this server accepts writes (a standby does not).
pub async fn is_writable(conn: &mut AsyncPgConnection) -> Result<bool, DbError> {
    let row: Recovery = diesel::sql_query("SELECT pg_is_in_recovery() AS in_recovery")
        .get_result(conn)
        .await?;
    Ok(!row.in_recovery)
}
