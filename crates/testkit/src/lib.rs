//! Test support shared by every crate's integration tests.
//!
//! - [`TestDatabase`]: a fresh, empty database per test: a SQLite file in a temporary directory, or
//!   a new PostgreSQL database created from `SPECTASK_TEST_DATABASE_URL` and dropped afterwards.
//! - [`TestApp`]: the real HTTP server on a random port over such a database, with a client.
//! - [`backend_tests!`]: writes each test once and runs it on both databases; without
//!   `SPECTASK_TEST_DATABASE_URL` the PostgreSQL variants print that they were skipped.
//!
//! Set `TEST_LOG=1` to see the server's logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod database;

pub use app::{Response, TestApp, TestOptions, fast_engine, fast_llm, fast_planner};
pub use database::{TestDatabase, postgres_url, skip_postgres};
pub use spectask_runtimes::llm::fake::{FakeOpenAi, FakeReply};

/// Installs a log subscriber once, printing only when `TEST_LOG` is set.
pub fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "debug,sqlx=warn,hyper=info",
                ))
                .with_test_writer()
                .try_init();
        }
    });
}

/// Defines each test twice: `sqlite::name` and `postgres::name`. The body gets `$db:
/// TestDatabase`, fresh and empty.
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* async fn $name:ident($db:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::init_test_logging();
                    let $db = $crate::TestDatabase::sqlite().await;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::init_test_logging();
                    let Some($db) = $crate::TestDatabase::postgres().await else {
                        $crate::skip_postgres(concat!(module_path!(), "::", stringify!($name)));
                        return;
                    };
                    $body
                }
            )*
        }
    };
}
