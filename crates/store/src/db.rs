//! One way to run SQL on either database, so every query of the store is written once.
//!
//! The store's SQL is the same text on both backends (`$n` placeholders work on SQLite too); only
//! the driver types differ. [`query`], [`query_as`] and [`query_scalar`] mirror sqlx's builders
//! but keep their parameters until they run; the target ([`Exec`]: a pool or an open [`Tx`])
//! then decides which driver binds and runs them. A parameter or result type must therefore work
//! on both drivers ([`Param`], [`Record`], [`Scalar`]), which is checked at compile time.
//!
//! Why not store functions generic over `sqlx::Database`: Rust does not carry a trait's `where`
//! clauses (such as `for<'c> &'c mut Self::Connection: Executor<'c>` or `String: Type<Self>`) to
//! its users, so each generic function would restate a dozen bounds. Only the two functions that
//! run a bound statement are generic (over a private [`Driver`], their bounds stated once); the
//! choice of driver is one `match` per statement, next to the network round trip it precedes.

use std::marker::PhantomData;

use sqlx::error::BoxDynError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteQueryResult, SqliteRow};
use sqlx::{
    Arguments, Database, Decode, Encode, Executor, FromRow, IntoArguments, Postgres, SqlSafeStr,
    SqlStr, Sqlite, Type,
};

use crate::backend::Dialect;
use crate::error::{StoreError, StoreResult};
use crate::group_commit::Member;

/// `rows` comma-separated tuples of `width` parameters each, `($n, $n+1, …)`, numbered after
/// `offset` parameters already bound: a multi-row statement's `VALUES`.
pub(crate) fn value_rows(rows: usize, width: usize, offset: usize) -> String {
    (0..rows)
        .map(|row| {
            let first = offset + row * width + 1;
            let params: Vec<String> = (first..first + width).map(|p| format!("${p}")).collect();
            format!("({})", params.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A pool to run a statement on (outside any transaction).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pool<'a> {
    Sqlite(&'a sqlx::SqlitePool),
    Postgres(&'a sqlx::PgPool),
}

/// An open transaction: a read snapshot begun by [`Pool::begin`], or a write, which is a member
/// of the writer's current group ([`crate::group_commit`], through
/// [`crate::backend::Backend::begin_write`]). Dropping it without [`Tx::commit`] rolls it back.
#[derive(Debug)]
pub(crate) struct Tx {
    conn: TxConn,
    /// The newest event appended in this transaction, announced to live streams after commit.
    last_event: Option<i64>,
}

#[derive(Debug)]
enum TxConn {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
    Write { member: Member, dialect: Dialect },
}

impl Pool<'_> {
    /// Opens a transaction on the pool.
    pub(crate) async fn begin(self) -> StoreResult<Tx> {
        let conn = match self {
            Pool::Sqlite(pool) => TxConn::Sqlite(pool.begin().await?),
            Pool::Postgres(pool) => TxConn::Postgres(pool.begin().await?),
        };
        Ok(Tx {
            conn,
            last_event: None,
        })
    }
}

impl Tx {
    /// A write transaction: `member` of the writer's group, on a `dialect` database.
    pub(crate) fn write(member: Member, dialect: Dialect) -> Self {
        Tx {
            conn: TxConn::Write { member, dialect },
            last_event: None,
        }
    }

    /// The dialect of the database the transaction runs on.
    pub(crate) fn dialect(&self) -> Dialect {
        match self.conn {
            TxConn::Sqlite(_) => Dialect::Sqlite,
            TxConn::Postgres(_) => Dialect::Postgres,
            TxConn::Write { dialect, .. } => dialect,
        }
    }

    /// Notes that event `id` was appended in this transaction (ids only grow within it).
    pub(crate) fn appended_event(&mut self, id: i64) {
        self.last_event = Some(id);
    }

    /// The newest event appended in this transaction, if any.
    pub(crate) fn last_event(&self) -> Option<i64> {
        self.last_event
    }

    /// Commits; a write is answered once the commit of its group is durable.
    pub(crate) async fn commit(self) -> StoreResult<()> {
        match self.conn {
            TxConn::Sqlite(tx) => tx.commit().await?,
            TxConn::Postgres(tx) => tx.commit().await?,
            TxConn::Write { member, .. } => member.finish(true).await?,
        }
        Ok(())
    }

    /// Rolls back (a write: its own work only, not its group's).
    pub(crate) async fn rollback(self) -> StoreResult<()> {
        match self.conn {
            TxConn::Sqlite(tx) => tx.rollback().await?,
            TxConn::Postgres(tx) => tx.rollback().await?,
            TxConn::Write { member, .. } => member.finish(false).await?,
        }
        Ok(())
    }
}

/// Where a statement runs: a pool, or the connection of an open transaction.
pub(crate) enum Exec<'a> {
    Sqlite(Target<'a, Sqlite>),
    Postgres(Target<'a, Postgres>),
    /// The writer connection is gone (the store was closed): the statement fails.
    Closed,
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
        match &mut tx.conn {
            TxConn::Sqlite(tx) => Exec::Sqlite(Target::Conn(&mut **tx)),
            TxConn::Postgres(tx) => Exec::Postgres(Target::Conn(&mut **tx)),
            TxConn::Write { member, .. } => member.exec(),
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

/// What the store asks of a driver beyond sqlx's `Database`: how a [`Param`] binds and how many
/// rows a statement changed. Implemented for the two drivers only.
pub(crate) trait Driver: Database {
    fn add<'q>(
        param: Box<dyn Param<'q> + 'q>,
        args: &mut Self::Arguments,
    ) -> Result<(), BoxDynError>;
    fn rows_affected(done: &Self::QueryResult) -> u64;
}

impl Driver for Sqlite {
    fn add<'q>(
        param: Box<dyn Param<'q> + 'q>,
        args: &mut SqliteArguments,
    ) -> Result<(), BoxDynError> {
        param.add_to_sqlite(args)
    }

    fn rows_affected(done: &SqliteQueryResult) -> u64 {
        done.rows_affected()
    }
}

impl Driver for Postgres {
    fn add<'q>(param: Box<dyn Param<'q> + 'q>, args: &mut PgArguments) -> Result<(), BoxDynError> {
        param.add_to_postgres(args)
    }

    fn rows_affected(done: &PgQueryResult) -> u64 {
        done.rows_affected()
    }
}

// The bounds are stated once, on this block: the driver-generic half of running a statement.
impl<DB: Driver> Target<'_, DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
{
    async fn execute(self, statement: Statement<'_>) -> StoreResult<u64> {
        let (sql, args) = statement.bound::<DB>()?;
        let mut held = None;
        let conn = self.connection(&mut held).await?;
        let done = sqlx::query_with(sql, args).execute(conn).await?;
        Ok(DB::rows_affected(&done))
    }

    /// The rows of `statement`: all of them, or (`first_only`) the first, as sqlx's
    /// `fetch_optional` reads it.
    async fn fetch<O>(self, statement: Statement<'_>, first_only: bool) -> StoreResult<Vec<O>>
    where
        O: for<'r> FromRow<'r, DB::Row> + Send + Unpin,
    {
        let (sql, args) = statement.bound::<DB>()?;
        let mut held = None;
        let conn = self.connection(&mut held).await?;
        let query = sqlx::query_as_with::<DB, O, _>(sql, args);
        Ok(if first_only {
            query.fetch_optional(conn).await?.into_iter().collect()
        } else {
            query.fetch_all(conn).await?
        })
    }
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

    /// The SQL and its parameters bound for driver `DB`.
    fn bound<DB: Driver>(self) -> StoreResult<(SqlStr, DB::Arguments)> {
        let mut args = DB::Arguments::default();
        for param in self.params {
            DB::add(param, &mut args).map_err(sqlx::Error::Encode)?;
        }
        Ok((self.sql, args))
    }

    async fn execute(self, on: Exec<'_>) -> StoreResult<Executed> {
        let rows_affected = match on {
            Exec::Sqlite(target) => target.execute(self).await?,
            Exec::Postgres(target) => target.execute(self).await?,
            Exec::Closed => return Err(StoreError::Database(sqlx::Error::PoolClosed)),
        };
        Ok(Executed { rows_affected })
    }

    async fn fetch<O: Record>(self, on: Exec<'_>, first_only: bool) -> StoreResult<Vec<O>> {
        match on {
            Exec::Sqlite(target) => target.fetch(self, first_only).await,
            Exec::Postgres(target) => target.fetch(self, first_only).await,
            Exec::Closed => Err(StoreError::Database(sqlx::Error::PoolClosed)),
        }
    }

    async fn fetch_optional<O: Record>(self, on: Exec<'_>) -> StoreResult<Option<O>> {
        Ok(self.fetch(on, true).await?.into_iter().next())
    }

    async fn fetch_all<O: Record>(self, on: Exec<'_>) -> StoreResult<Vec<O>> {
        self.fetch(on, false).await
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
