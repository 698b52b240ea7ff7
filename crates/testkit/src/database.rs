//! Fresh databases for tests.

use std::path::PathBuf;

use spectask_store::{ConnectOptions, Store};
use sqlx::Connection;

/// The admin URL for PostgreSQL tests, if configured.
pub fn postgres_url() -> Option<String> {
    std::env::var("SPECTASK_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// Skips a PostgreSQL test (see [`crate::skip`]: it fails instead where the tier is required).
pub fn skip_postgres(test: &str) {
    crate::skip(
        crate::Tier::Postgres,
        &format!("{test}: PostgreSQL tests need SPECTASK_TEST_DATABASE_URL"),
    );
}

/// A fresh database that lives as long as this value.
#[derive(Debug)]
pub enum TestDatabase {
    Sqlite {
        dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDatabase {
    /// A new SQLite file in a new temporary directory.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("spectask.db").display());
        TestDatabase::Sqlite { dir, url }
    }

    /// A new PostgreSQL database, or `None` when no server is configured.
    pub async fn postgres() -> Option<Self> {
        Some(Self::postgres_on(&postgres_url()?).await)
    }

    /// A new PostgreSQL database on the server of `admin_url` (whose user may create databases),
    /// dropped with this value.
    ///
    /// # Panics
    /// When the server cannot be reached or refuses the database.
    pub async fn postgres_on(admin_url: &str) -> Self {
        let admin_url = admin_url.to_owned();
        let name = format!(
            "spectask_t_{}",
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let mut conn = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = replace_database(&admin_url, &name);
        TestDatabase::Postgres {
            admin_url,
            name,
            url,
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDatabase::Sqlite { url, .. } | TestDatabase::Postgres { url, .. } => url,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            TestDatabase::Sqlite { .. } => "sqlite",
            TestDatabase::Postgres { .. } => "postgres",
        }
    }

    /// The SQLite data directory (for tests that restart a server on the same file).
    pub fn sqlite_dir(&self) -> Option<PathBuf> {
        match self {
            TestDatabase::Sqlite { dir, .. } => Some(dir.path().to_owned()),
            TestDatabase::Postgres { .. } => None,
        }
    }

    /// Opens (and migrates) a store on this database.
    pub async fn store(&self) -> Store {
        Store::connect(self.url(), ConnectOptions::default())
            .await
            .expect("connect store")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres {
            admin_url, name, ..
        } = self
        {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime, so the async cleanup gets its own thread.
            let cleanup = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime
                    .block_on(async {
                        let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut conn)
                        .await?;
                        conn.close().await?;
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                    })
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            if let Ok(Err(err)) = cleanup.join() {
                eprintln!(
                    "warning: could not drop test database {}: {err}",
                    self.url()
                );
            }
        }
    }
}

/// `postgres://u@h:5432/admin?x=y` with the database name replaced.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map(|i| i + authority_start);
    let prefix = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(query) => format!("{prefix}/{name}?{query}"),
        None => format!("{prefix}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            replace_database("postgres://p@h:5432/test", "x"),
            "postgres://p@h:5432/x"
        );
        assert_eq!(
            replace_database("postgres://p@h/test?sslmode=disable", "x"),
            "postgres://p@h/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://p@h", "x"), "postgres://p@h/x");
    }
}
