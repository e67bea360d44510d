//! The connection pool and the database error every query returns.

use std::sync::Arc;
use std::time::Duration;

use deadpool::Runtime;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use futures_util::FutureExt;

use crate::connector::PgConnector;
use crate::embedded::describe_pg_error;

/// A pooled connection; derefs to [`AsyncPgConnection`].
pub type PooledConnection = Object<AsyncPgConnection>;

/// A database failure, classified once so every caller maps it the same way.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had in time, or the server is read-only or gone (failover):
    /// the caller should answer "try again", never 500.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] DieselError),
    /// `database.url` cannot be used (the message says why); not worth retrying.
    #[error("{0}")]
    Config(String),
}

impl DbError {
    /// The row does not exist (or belongs to another tenant; callers cannot tell).
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(DieselError::NotFound))
    }

    /// A foreign key refused the change (a row still refers to the one being removed).
    pub fn is_foreign_key_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::ForeignKeyViolation,
                _
            ))
        )
    }

    /// A unique constraint refused the row.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }

    /// Worth retrying later: pool timeout, lost connection, read-only standby, serialization
    /// conflict.
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Unavailable(_) => true,
            // A deadlock (SQLSTATE 40P01, which diesel does not name) aborts one of two
            // transactions that would wait on each other; trying again succeeds. Known by its
            // message: the server's lc_messages must be English (the embedded cluster's are).
            DbError::Query(DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                info.message().starts_with("deadlock detected")
            }
            DbError::Query(DieselError::DatabaseError(kind, _)) => matches!(
                kind,
                DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::ReadOnlyTransaction
                    | DatabaseErrorKind::SerializationFailure
                    | DatabaseErrorKind::UnableToSendCommand
            ),
            DbError::Query(DieselError::BrokenTransactionManager) => true,
            DbError::Query(_) | DbError::Config(_) => false,
        }
    }
}

/// The pool of a process.
#[derive(Clone)]
pub struct DbPool {
    inner: Pool<AsyncPgConnection>,
}

impl std::fmt::Debug for DbPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.inner.status();
        write!(
            f,
            "DbPool(size {}, available {})",
            status.size, status.available
        )
    }
}

/// Opens one connection with a connect timeout, with the TLS `url` asks for
/// ([`PgConnector`]). tokio-postgres understands multi-host URLs with
/// `target_session_attrs=read-write`, which is how a failover is followed. The worker's
/// advisory-lock connections come from here.
pub async fn establish(
    url: &str,
    connect_timeout: Duration,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let connector = PgConnector::new(url)
        .map_err(|e| diesel::ConnectionError::InvalidConnectionUrl(e.to_string()))?;
    establish_with(&connector, connect_timeout).await
}

/// [`establish`] with a URL read already.
pub async fn establish_with(
    connector: &PgConnector,
    connect_timeout: Duration,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    let (client, connection) = connector
        .connect(Some(connect_timeout))
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(describe_pg_error(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

impl DbPool {
    /// A pool of up to `size` connections; `acquire_timeout` bounds every wait for one.
    /// The URL is read (and its `sslrootcert` loaded) once, here.
    pub fn new(
        url: &str,
        size: usize,
        connect_timeout: Duration,
        acquire_timeout: Duration,
    ) -> Result<Self, DbError> {
        let connector =
            Arc::new(PgConnector::new(url).map_err(|e| DbError::Config(e.to_string()))?);
        let mut manager_config = ManagerConfig::default();
        manager_config.custom_setup = Box::new(move |_url| {
            let connector = connector.clone();
            async move { establish_with(&connector, connect_timeout).await }.boxed()
        });
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
        let inner = Pool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(acquire_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        Ok(Self { inner })
    }

    /// A connection, or [`DbError::Unavailable`] when none frees up in time.
    pub async fn get(&self) -> Result<PooledConnection, DbError> {
        self.inner
            .get()
            .await
            .map_err(|e: PoolError| DbError::Unavailable(e.to_string()))
    }

    /// (connections open, connections idle), for metrics.
    pub fn status(&self) -> (usize, usize) {
        let status = self.inner.status();
        (status.size, status.available)
    }
}
