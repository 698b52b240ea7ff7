//! One way to run SQL on either database, so every query of the store is written once.
//!
//! The store's SQL is the same text on both backends (`$n` placeholders work on SQLite too); only
//! the driver types differ. [`query`], [`query_as`] and [`query_scalar`] mirror sqlx's builders
//! but keep their parameters until they run; the target ([`Exec`]: a pool or an open [`Tx`])
//! then decides which driver binds and runs them. A parameter or result type must therefore work
//! on both drivers ([`Param`], [`Record`], [`Scalar`]), which is checked at compile time.
//!
//! Why not functions generic over `sqlx::Database`: Rust does not carry a trait's `where` clauses
//! (such as `for<'c> &'c mut Self::Connection: Executor<'c>` or `String: Type<Self>`) to its
//! users, so each generic function would restate a dozen bounds. The dispatch here is one `match`
//! per query, next to the network round trip it precedes.

use std::marker::PhantomData;

use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{
    Arguments, Database, Decode, Encode, FromRow, Postgres, SqlSafeStr, SqlStr, Sqlite, Type,
};

use crate::backend::Dialect;
use crate::error::{StoreError, StoreResult};

/// A pool to run a statement on (outside any transaction).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pool<'a> {
    Sqlite(&'a sqlx::SqlitePool),
    Postgres(&'a sqlx::PgPool),
}

/// An open write transaction, begun by [`crate::backend::Backend::begin_write`]. Dropping it
/// without [`Tx::commit`] rolls it back.
#[derive(Debug)]
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    /// The dialect of the database the transaction runs on.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    pub(crate) async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    pub(crate) async fn rollback(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(tx) => tx.rollback().await?,
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// Where a statement runs: a pool, or the connection of an open transaction.
pub(crate) enum Exec<'a> {
    Sqlite(Target<'a, Sqlite>),
    Postgres(Target<'a, Postgres>),
}

pub(crate) enum Target<'a, DB: Database> {
    Pool(&'a sqlx::Pool<DB>),
    Conn(&'a mut DB::Connection),
}

impl<'a, DB: Database> Target<'a, DB> {
    /// The connection to run on: the transaction's, or one taken from the pool into `held` (as
    /// sqlx's pool executor does) and returned to it when `held` drops.
    async fn connection(
        self,
        held: &'a mut Option<PoolConnection<DB>>,
    ) -> StoreResult<&'a mut DB::Connection> {
        match self {
            Target::Conn(conn) => Ok(conn),
            Target::Pool(pool) => Ok(&mut **held.insert(pool.acquire().await?)),
        }
    }
}

impl<'a> From<Pool<'a>> for Exec<'a> {
    fn from(pool: Pool<'a>) -> Self {
        match pool {
            Pool::Sqlite(pool) => Exec::Sqlite(Target::Pool(pool)),
            Pool::Postgres(pool) => Exec::Postgres(Target::Pool(pool)),
        }
    }
}

impl<'a> From<&'a mut Tx> for Exec<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        match tx {
            Tx::Sqlite(tx) => Exec::Sqlite(Target::Conn(&mut **tx)),
            Tx::Postgres(tx) => Exec::Postgres(Target::Conn(&mut **tx)),
        }
    }
}

/// A value a statement can bind on both databases.
pub(crate) trait Param<'q>: Send + 'q {
    fn add_to_sqlite(self: Box<Self>, args: &mut SqliteArguments) -> Result<(), BoxDynError>;
    fn add_to_postgres(self: Box<Self>, args: &mut PgArguments) -> Result<(), BoxDynError>;
}

impl<'q, T> Param<'q> for T
where
    T: Send + 'q + Encode<'q, Sqlite> + Type<Sqlite> + Encode<'q, Postgres> + Type<Postgres>,
{
    fn add_to_sqlite(self: Box<Self>, args: &mut SqliteArguments) -> Result<(), BoxDynError> {
        args.add(*self)
    }

    fn add_to_postgres(self: Box<Self>, args: &mut PgArguments) -> Result<(), BoxDynError> {
        args.add(*self)
    }
}

/// A row shape both databases decode (a `#[derive(sqlx::FromRow)]` struct or a tuple).
pub(crate) trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// A single column's value both databases decode.
pub(crate) trait Scalar:
    Type<Sqlite>
    + for<'r> Decode<'r, Sqlite>
    + Type<Postgres>
    + for<'r> Decode<'r, Postgres>
    + Send
    + Unpin
{
}

impl<T> Scalar for T where
    T: Type<Sqlite>
        + for<'r> Decode<'r, Sqlite>
        + Type<Postgres>
        + for<'r> Decode<'r, Postgres>
        + Send
        + Unpin
{
}

/// SQL text and its parameters, not yet bound to a driver.
struct Statement<'q> {
    sql: SqlStr,
    params: Vec<Box<dyn Param<'q>>>,
}

impl<'q> Statement<'q> {
    fn new(sql: impl SqlSafeStr) -> Self {
        Self {
            sql: sql.into_sql_str(),
            params: Vec::new(),
        }
    }

    fn push(&mut self, value: impl Param<'q>) {
        self.params.push(Box::new(value));
    }

    fn sqlite(self) -> StoreResult<(SqlStr, SqliteArguments)> {
        let mut args = SqliteArguments::default();
        for param in self.params {
            param
                .add_to_sqlite(&mut args)
                .map_err(sqlx::Error::Encode)?;
        }
        Ok((self.sql, args))
    }

    fn postgres(self) -> StoreResult<(SqlStr, PgArguments)> {
        let mut args = PgArguments::default();
        for param in self.params {
            param
                .add_to_postgres(&mut args)
                .map_err(sqlx::Error::Encode)?;
        }
        Ok((self.sql, args))
    }

    async fn execute(self, on: Exec<'_>) -> StoreResult<Executed> {
        let mut sqlite_held = None;
        let mut postgres_held = None;
        let rows_affected = match on {
            Exec::Sqlite(target) => {
                let (sql, args) = self.sqlite()?;
                let conn = target.connection(&mut sqlite_held).await?;
                sqlx::query_with(sql, args)
                    .execute(conn)
                    .await?
                    .rows_affected()
            }
            Exec::Postgres(target) => {
                let (sql, args) = self.postgres()?;
                let conn = target.connection(&mut postgres_held).await?;
                sqlx::query_with(sql, args)
                    .execute(conn)
                    .await?
                    .rows_affected()
            }
        };
        Ok(Executed { rows_affected })
    }

    async fn fetch_optional<O: Record>(self, on: Exec<'_>) -> StoreResult<Option<O>> {
        let mut sqlite_held = None;
        let mut postgres_held = None;
        Ok(match on {
            Exec::Sqlite(target) => {
                let (sql, args) = self.sqlite()?;
                let conn = target.connection(&mut sqlite_held).await?;
                sqlx::query_as_with(sql, args).fetch_optional(conn).await?
            }
            Exec::Postgres(target) => {
                let (sql, args) = self.postgres()?;
                let conn = target.connection(&mut postgres_held).await?;
                sqlx::query_as_with(sql, args).fetch_optional(conn).await?
            }
        })
    }

    async fn fetch_all<O: Record>(self, on: Exec<'_>) -> StoreResult<Vec<O>> {
        let mut sqlite_held = None;
        let mut postgres_held = None;
        Ok(match on {
            Exec::Sqlite(target) => {
                let (sql, args) = self.sqlite()?;
                let conn = target.connection(&mut sqlite_held).await?;
                sqlx::query_as_with(sql, args).fetch_all(conn).await?
            }
            Exec::Postgres(target) => {
                let (sql, args) = self.postgres()?;
                let conn = target.connection(&mut postgres_held).await?;
                sqlx::query_as_with(sql, args).fetch_all(conn).await?
            }
        })
    }

    /// As sqlx's `fetch_one`: no row is `RowNotFound`.
    async fn fetch_one<O: Record>(self, on: Exec<'_>) -> StoreResult<O> {
        self.fetch_optional(on)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }
}

/// What an executed statement did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Executed {
    rows_affected: u64,
}

impl Executed {
    pub(crate) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement run for its effect (sqlx's `query`).
pub(crate) struct Query<'q>(Statement<'q>);

/// A statement whose rows decode into `O` (sqlx's `query_as`).
pub(crate) struct QueryAs<'q, O>(Statement<'q>, PhantomData<fn() -> O>);

/// A statement whose rows' first column decodes into `O` (sqlx's `query_scalar`).
pub(crate) struct QueryScalar<'q, O>(Statement<'q>, PhantomData<fn() -> O>);

pub(crate) fn query<'q>(sql: impl SqlSafeStr) -> Query<'q> {
    Query(Statement::new(sql))
}

pub(crate) fn query_as<'q, O: Record>(sql: impl SqlSafeStr) -> QueryAs<'q, O> {
    QueryAs(Statement::new(sql), PhantomData)
}

pub(crate) fn query_scalar<'q, O: Scalar>(sql: impl SqlSafeStr) -> QueryScalar<'q, O> {
    QueryScalar(Statement::new(sql), PhantomData)
}

impl<'q> Query<'q> {
    pub(crate) fn bind(mut self, value: impl Param<'q>) -> Self {
        self.0.push(value);
        self
    }

    pub(crate) async fn execute<'e>(self, on: impl Into<Exec<'e>>) -> StoreResult<Executed> {
        self.0.execute(on.into()).await
    }
}

impl<'q, O: Record> QueryAs<'q, O> {
    pub(crate) fn bind(mut self, value: impl Param<'q>) -> Self {
        self.0.push(value);
        self
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<Exec<'e>>) -> StoreResult<O> {
        self.0.fetch_one(on.into()).await
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<Exec<'e>>,
    ) -> StoreResult<Option<O>> {
        self.0.fetch_optional(on.into()).await
    }

    pub(crate) async fn fetch_all<'e>(self, on: impl Into<Exec<'e>>) -> StoreResult<Vec<O>> {
        self.0.fetch_all(on.into()).await
    }
}

impl<'q, O: Scalar> QueryScalar<'q, O> {
    pub(crate) fn bind(mut self, value: impl Param<'q>) -> Self {
        self.0.push(value);
        self
    }

    pub(crate) async fn fetch_one<'e>(self, on: impl Into<Exec<'e>>) -> StoreResult<O> {
        let (value,) = self.0.fetch_one::<(O,)>(on.into()).await?;
        Ok(value)
    }

    pub(crate) async fn fetch_optional<'e>(
        self,
        on: impl Into<Exec<'e>>,
    ) -> StoreResult<Option<O>> {
        let row = self.0.fetch_optional::<(O,)>(on.into()).await?;
        Ok(row.map(|(value,)| value))
    }

    pub(crate) async fn fetch_all<'e>(self, on: impl Into<Exec<'e>>) -> StoreResult<Vec<O>> {
        let rows = self.0.fetch_all::<(O,)>(on.into()).await?;
        Ok(rows.into_iter().map(|(value,)| value).collect())
    }
}
