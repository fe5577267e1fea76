//! Copies every row of one database into another: how a SQLite deployment moves to PostgreSQL
//! (`server copy-database <FROM_URL> <TO_URL>`). Either engine may be either side.
//!
//! - Every table of the migrations, in foreign-key order (accounts first), with its ids as they are:
//!   sealed secrets are bound to their account id and column (see `crypto`), so they stay sealed and
//!   keep opening. Nothing is decrypted, and no value is logged.
//! - Pages of [`BATCH`] rows in primary-key order, so memory stays bounded whatever the size.
//! - The source is read in one transaction (one snapshot), the target written in one transaction:
//!   an error anywhere leaves the target as it was.
//! - The target must be empty: a target holding any row (an account, or anything else) is refused
//!   before anything is written.
//! - Afterwards each generated id continues past every id the source handed out (PostgreSQL's
//!   identity sequences are set with `setval`; SQLite's `sqlite_sequence` follows), so new rows get
//!   fresh ids.
//!
//! The column list is explicit per table; a test compares it with the migrations of both engines, and
//! the copy itself compares it with both databases before it writes, so a column added by a
//! migration cannot be left behind silently.
//!
//! The source server should be stopped during the copy: rows it writes after the copy's snapshot are
//! not copied.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::Context;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{Engine, Store};

/// Rows per page read and per `INSERT` written. At most 25 columns a table, so a statement binds
/// at most 12,500 values, within both engines' limits (SQLite 32,766, PostgreSQL 65,535).
pub const BATCH: usize = 500;

/// How a column is read and bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    /// Read as `CASE WHEN column THEN 1 ELSE 0 END` (see the store's notes on booleans), bound as a bool.
    Bool,
}

use Kind::{Bool, Int, Text};

/// One table as the copy knows it.
struct Table {
    name: &'static str,
    /// The primary key, which pages are read in the order of.
    key: &'static [&'static str],
    /// Whether `id` is generated (SQLite `AUTOINCREMENT`, PostgreSQL identity).
    generated_id: bool,
    columns: &'static [(&'static str, Kind)],
}

/// Every table, parents before children (the children reference `accounts` only).
const TABLES: &[Table] = &[
    Table {
        name: "accounts",
        key: &["id"],
        generated_id: true,
        columns: &[
            ("id", Int),
            ("kommo_account_id", Int),
            ("subdomain", Text),
            ("api_domain", Text),
            ("country", Text),
            ("timezone", Text),
            ("state", Text),
            ("state_reason", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "kommo_auth_tokens",
        key: &["account_id"],
        generated_id: false,
        columns: &[
            ("account_id", Int),
            ("access_token", Text),
            ("refresh_token", Text),
            ("expires_at", Int),
            ("refreshing_until", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "oauth_codes",
        key: &["id"],
        generated_id: true,
        columns: &[
            ("id", Int),
            ("api_domain", Text),
            ("code", Text),
            ("state", Text),
            ("attempts", Int),
            ("last_error", Text),
            ("received_at", Int),
            ("lease_until", Int),
        ],
    },
    Table {
        name: "oauth_states",
        key: &["state_hash"],
        generated_id: false,
        columns: &[("state_hash", Text), ("browser_hash", Text), ("expires_at", Int)],
    },
    Table {
        name: "used_token_ids",
        key: &["jti"],
        generated_id: false,
        columns: &[("jti", Text), ("expires_at", Int)],
    },
    Table {
        name: "widget_settings",
        key: &["account_id"],
        generated_id: false,
        columns: &[
            ("account_id", Int),
            ("active", Bool),
            ("credential_method", Text),
            ("provider_url", Text),
            ("voip_login", Text),
            ("voip_token", Text),
            ("voip_account_id", Text),
            ("hook_id", Text),
            ("webhook_secret", Text),
            ("webhook_secret_hint", Text),
            ("previous_webhook_secret", Text),
            ("previous_secret_until", Int),
            ("config", Text),
            ("fallback_user_id", Int),
            ("updated_by_user_id", Int),
            ("updated_at", Int),
            ("provider_system", Text),
        ],
    },
    Table {
        name: "voip_users",
        key: &["id"],
        generated_id: true,
        columns: &[("id", Int), ("account_id", Int), ("kommo_user_id", Int), ("extension_id", Text)],
    },
    Table {
        name: "voip_calls",
        key: &["id"],
        generated_id: true,
        columns: &[
            ("id", Int),
            ("account_id", Int),
            ("call_id", Text),
            ("voip_account_id", Text),
            ("from_number", Text),
            ("to_number", Text),
            ("direction", Text),
            ("extension", Text),
            ("status", Text),
            ("started_at", Int),
            ("duration", Int),
            ("recording_url", Text),
            ("responsible_user_id", Int),
            ("call_result", Int),
            ("delivery_status", Text),
            ("entity_id", Int),
            ("entity_type", Text),
            ("unsorted_uid", Text),
            ("created_at", Int),
            ("updated_at", Int),
            ("answered", Bool),
            ("client_number", Text),
            ("delivery_error", Text),
            ("delivered_at", Int),
            ("kommo_call_id", Int),
        ],
    },
    Table {
        name: "kommo_rate",
        key: &["bucket"],
        generated_id: false,
        columns: &[("bucket", Text), ("next_at_ms", Int)],
    },
    Table {
        name: "webhook_inbox",
        key: &["id"],
        generated_id: true,
        columns: &[
            ("id", Int),
            ("account_id", Int),
            ("webhook_id", Text),
            ("event_key", Text),
            ("call_id", Text),
            ("body", Text),
            ("received_at", Int),
            ("applied_at", Int),
        ],
    },
    Table {
        name: "jobs",
        key: &["id"],
        generated_id: true,
        columns: &[
            ("id", Int),
            ("account_id", Int),
            ("kind", Text),
            ("subject", Text),
            ("state", Text),
            ("attempts", Int),
            ("run_at", Int),
            ("locked_by", Text),
            ("locked_until", Int),
            ("last_error", Text),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "kommo_writes",
        key: &["account_id", "call_id", "action_key"],
        generated_id: false,
        columns: &[
            ("account_id", Int),
            ("call_id", Text),
            ("action_key", Text),
            ("state", Text),
            ("outcome", Text),
            ("attempts", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "call_results",
        key: &["account_id", "call_id"],
        generated_id: false,
        columns: &[
            ("account_id", Int),
            ("call_id", Text),
            ("result", Text),
            ("user_id", Int),
            ("created_at", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "push_tickets",
        key: &["ticket_hash"],
        generated_id: false,
        columns: &[("ticket_hash", Text), ("account_id", Int), ("user_id", Int), ("expires_at", Int)],
    },
    Table { name: "workers", key: &["id"], generated_id: false, columns: &[("id", Text), ("seen_at_ms", Int)] },
    Table {
        name: "phone_entities",
        key: &["account_id", "entity_kind", "entity_id"],
        generated_id: false,
        columns: &[
            ("account_id", Int),
            ("entity_kind", Text),
            ("entity_id", Int),
            ("name", Text),
            ("company_id", Int),
            ("responsible_user_id", Int),
            ("phone_count", Int),
            ("lead_ids", Text),
            ("updated_at", Int),
            ("seen_at", Int),
        ],
    },
    Table {
        name: "phone_numbers",
        key: &["account_id", "e164", "entity_kind", "entity_id"],
        generated_id: false,
        columns: &[("account_id", Int), ("e164", Text), ("entity_kind", Text), ("entity_id", Int)],
    },
    Table {
        name: "phone_leads",
        key: &["account_id", "lead_id"],
        generated_id: false,
        columns: &[
            ("account_id", Int),
            ("lead_id", Int),
            ("name", Text),
            ("price", Int),
            ("pipeline_id", Int),
            ("status_id", Int),
            ("responsible_user_id", Int),
            ("created_at", Int),
            ("updated_at", Int),
            ("seen_at", Int),
        ],
    },
    Table {
        name: "phone_lead_links",
        key: &["account_id", "entity_kind", "entity_id", "lead_id"],
        generated_id: false,
        columns: &[("account_id", Int), ("entity_kind", Text), ("entity_id", Int), ("lead_id", Int)],
    },
    Table {
        name: "kommo_hooks",
        key: &["account_id"],
        generated_id: false,
        columns: &[("account_id", Int), ("token", Text), ("state", Text), ("checked_at", Int)],
    },
    Table {
        name: "kommo_events",
        key: &["id"],
        generated_id: true,
        columns: &[("id", Int), ("account_id", Int), ("body", Text), ("received_at", Int)],
    },
    Table {
        name: "phone_sync",
        key: &["account_id"],
        generated_id: false,
        columns: &[
            ("account_id", Int),
            ("pass_kind", Text),
            ("pass_page", Int),
            ("pass_from", Int),
            ("pass_started_at", Int),
            ("pass_entities", Int),
            ("complete_at", Int),
            ("fresh_at", Int),
            ("full_at", Int),
            ("next_from", Int),
            ("updated_at", Int),
        ],
    },
    Table {
        name: "call_bindings",
        key: &["account_id", "call_id"],
        generated_id: false,
        columns: &[("account_id", Int), ("call_id", Text), ("signed", Text), ("line", Text), ("created_at", Int)],
    },
    Table {
        name: "dial_guards",
        key: &["account_id", "kommo_user_id"],
        generated_id: false,
        columns: &[("account_id", Int), ("kommo_user_id", Int), ("until_ms", Int)],
    },
    Table {
        name: "call_lists",
        key: &["id"],
        generated_id: true,
        columns: &[
            ("id", Int),
            ("account_id", Int),
            ("kommo_user_id", Int),
            ("source", Text),
            ("state", Text),
            ("next_position", Int),
            ("current_position", Int),
            ("created_at", Int),
            ("updated_at_ms", Int),
        ],
    },
    Table {
        name: "call_list_entries",
        key: &["list_id", "position"],
        generated_id: false,
        columns: &[
            ("list_id", Int),
            ("position", Int),
            ("account_id", Int),
            ("entity_id", Int),
            ("name", Text),
            ("via", Text),
            ("number", Text),
            ("number_shown", Text),
            ("state", Text),
            ("call_id", Text),
            ("dialed_at_ms", Int),
            ("ended_at_ms", Int),
            ("duration", Int),
            ("error", Text),
        ],
    },
];

/// What a copy did: rows per table, in the order they were copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub from: Engine,
    pub to: Engine,
    pub tables: Vec<(&'static str, u64)>,
}

impl CopyReport {
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|(_, rows)| rows).sum()
    }
}

impl fmt::Display for CopyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "copied {} -> {}", self.from.as_str(), self.to.as_str())?;
        for (table, rows) in &self.tables {
            writeln!(f, "  {table:<20} {rows:>10}")?;
        }
        write!(f, "  {:<20} {:>10}", "total", self.total())
    }
}

/// One value as read from the source and bound into the target.
#[derive(Debug, Clone)]
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl Value {
    fn read(row: &AnyRow, index: usize, kind: Kind) -> sqlx::Result<Value> {
        Ok(match kind {
            Int => Value::Int(row.try_get(index)?),
            Text => Value::Text(row.try_get(index)?),
            Bool => Value::Bool(row.try_get::<Option<i64>, _>(index)?.map(|flag| flag != 0)),
        })
    }

    fn bind(self, query: Query<'_>) -> Query<'_> {
        match self {
            Value::Int(value) => query.bind(value),
            Value::Text(value) => query.bind(value),
            Value::Bool(value) => query.bind(value),
        }
    }
}

/// Copies every row of `from` into `to`, which must be empty (see the module's notes). Both stores
/// are migrated already ([`Store::connect`] does it), so both hold this build's schema.
pub async fn copy_database(from: &Store, to: &Store) -> anyhow::Result<CopyReport> {
    let mut source = from.pool.begin().await.context("opening a transaction on the source database")?;
    if from.engine == Engine::Postgres {
        // One snapshot for every table, as SQLite's read transaction gives.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *source).await?;
    }
    let mut target = to.pool.begin().await.context("opening a transaction on the target database")?;

    check_schema(&mut source, from.engine).await.context("the source database")?;
    check_schema(&mut target, to.engine).await.context("the target database")?;
    for table in TABLES {
        let holds_rows = sqlx::query(&format!("SELECT 1 FROM {} LIMIT 1", table.name))
            .fetch_optional(&mut *target)
            .await
            .with_context(|| format!("reading the target's {}", table.name))?
            .is_some();
        if holds_rows {
            let what = match table.name {
                "accounts" => "accounts".to_owned(),
                other => format!("rows in {other}"),
            };
            anyhow::bail!(
                "the target database already holds {what}: copy-database fills only an empty database \
                 (a new one, on which no server has run yet); nothing was written"
            );
        }
    }

    let mut report = CopyReport { from: from.engine, to: to.engine, tables: Vec::with_capacity(TABLES.len()) };
    for table in TABLES {
        let rows =
            copy_table(&mut source, &mut target, table).await.with_context(|| format!("copying {}", table.name))?;
        if table.generated_id {
            let issued = last_issued_id(&mut source, from.engine, table.name)
                .await
                .with_context(|| format!("reading the source's last id of {}", table.name))?;
            continue_ids(&mut target, to.engine, table.name, issued)
                .await
                .with_context(|| format!("moving the target's ids of {} past the copied ones", table.name))?;
        }
        report.tables.push((table.name, rows));
    }
    target.commit().await.context("committing the target database")?;
    source.rollback().await.ok();
    Ok(report)
}

/// Copies one table page by page, in primary-key order; returns its row count.
async fn copy_table(source: &mut AnyConnection, target: &mut AnyConnection, table: &Table) -> anyhow::Result<u64> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let selected: Vec<String> = table
        .columns
        .iter()
        .map(|&(name, kind)| match kind {
            Bool => format!("CASE WHEN {name} IS NULL THEN NULL WHEN {name} THEN 1 ELSE 0 END AS {name}"),
            Int | Text => name.to_owned(),
        })
        .collect();
    let key = table.key.join(", ");
    let key_at: Vec<usize> = table
        .key
        .iter()
        .map(|part| names.iter().position(|name| name == part).expect("a table's key is among its columns"))
        .collect();
    let first_page = format!("SELECT {} FROM {} ORDER BY {key} LIMIT {BATCH}", selected.join(", "), table.name);
    let placeholders: Vec<String> = (1..=key_at.len()).map(|n| format!("${n}")).collect();
    let next_page = format!(
        "SELECT {} FROM {} WHERE ({key}) > ({}) ORDER BY {key} LIMIT {BATCH}",
        selected.join(", "),
        table.name,
        placeholders.join(", ")
    );

    let mut copied = 0u64;
    let mut after: Option<Vec<Value>> = None;
    loop {
        let rows = match &after {
            None => sqlx::query(&first_page).fetch_all(&mut *source).await?,
            Some(last_key) => {
                let mut query = sqlx::query(&next_page);
                for value in last_key {
                    query = value.clone().bind(query);
                }
                query.fetch_all(&mut *source).await?
            }
        };
        let Some(last) = rows.last() else { break };
        let mut values = Vec::with_capacity(rows.len());
        for row in &rows {
            let read: sqlx::Result<Vec<Value>> =
                table.columns.iter().enumerate().map(|(index, &(_, kind))| Value::read(row, index, kind)).collect();
            values.push(read?);
        }
        after = Some(
            key_at
                .iter()
                .map(|&index| Value::read(last, index, table.columns[index].1))
                .collect::<sqlx::Result<_>>()?,
        );

        let mut insert = format!("INSERT INTO {} ({}) ", table.name, names.join(", "));
        super::push_values(&mut insert, values.len(), names.len());
        let mut query = sqlx::query(&insert);
        for value in values.into_iter().flatten() {
            query = value.bind(query);
        }
        query.execute(&mut *target).await?;

        copied += rows.len() as u64;
        if rows.len() < BATCH {
            break;
        }
    }
    Ok(copied)
}

/// The highest id the database ever handed out for `table` (deleted rows included), where it keeps
/// one: SQLite's `sqlite_sequence`, PostgreSQL's sequence.
async fn last_issued_id(connection: &mut AnyConnection, engine: Engine, table: &str) -> sqlx::Result<Option<i64>> {
    let sql = match engine {
        Engine::Sqlite => "SELECT seq FROM sqlite_sequence WHERE name = $1",
        Engine::Postgres => "SELECT pg_sequence_last_value(CAST(pg_get_serial_sequence($1, 'id') AS regclass))",
    };
    let issued: Option<Option<i64>> = sqlx::query_scalar(sql).bind(table).fetch_optional(connection).await?;
    Ok(issued.flatten())
}

/// Makes the target's next generated id of `table` come after both its copied rows and `issued`.
async fn continue_ids(
    connection: &mut AnyConnection,
    engine: Engine,
    table: &str,
    issued: Option<i64>,
) -> sqlx::Result<()> {
    let issued = issued.unwrap_or(0);
    match engine {
        Engine::Postgres => {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST(COALESCE(MAX(id), 0), $1) + 1, false)
                 FROM {table}"
            );
            sqlx::query(&sql).bind(issued).execute(connection).await.map(drop)
        }
        // SQLite raised `sqlite_sequence` to the highest id inserted; ids the source handed out to rows
        // it deleted since are not reused either.
        Engine::Sqlite => {
            if issued == 0 {
                return Ok(());
            }
            sqlx::query("UPDATE sqlite_sequence SET seq = $2 WHERE name = $1 AND seq < $2")
                .bind(table)
                .bind(issued)
                .execute(&mut *connection)
                .await?;
            sqlx::query(
                "INSERT INTO sqlite_sequence (name, seq) SELECT $1, $2
                 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = $1)",
            )
            .bind(table)
            .bind(issued)
            .execute(connection)
            .await
            .map(drop)
        }
    }
}

/// Refuses a database whose tables or columns are not exactly the ones [`TABLES`] copies (a column
/// the copy does not know would be lost).
async fn check_schema(connection: &mut AnyConnection, engine: Engine) -> anyhow::Result<()> {
    let tables_sql = match engine {
        Engine::Sqlite => {
            "SELECT name FROM sqlite_master
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name <> '_sqlx_migrations'"
        }
        Engine::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'"
        }
    };
    let present: BTreeSet<String> =
        sqlx::query_scalar(tables_sql).fetch_all(&mut *connection).await?.into_iter().collect();
    let known: BTreeSet<String> = TABLES.iter().map(|table| table.name.to_owned()).collect();
    if present != known {
        anyhow::bail!(
            "its tables are not the ones this build copies: unknown {:?}, missing {:?}",
            present.difference(&known).collect::<Vec<_>>(),
            known.difference(&present).collect::<Vec<_>>()
        );
    }
    for table in TABLES {
        let columns_sql = match engine {
            Engine::Sqlite => format!("SELECT name FROM pragma_table_info('{}')", table.name),
            Engine::Postgres => format!(
                "SELECT CAST(column_name AS TEXT) FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = '{}'",
                table.name
            ),
        };
        let present: BTreeSet<String> =
            sqlx::query_scalar(&columns_sql).fetch_all(&mut *connection).await?.into_iter().collect();
        let known: BTreeSet<String> = table.columns.iter().map(|(name, _)| (*name).to_owned()).collect();
        if present != known {
            anyhow::bail!(
                "the columns of {} are not the ones this build copies: unknown {:?}, missing {:?}",
                table.name,
                present.difference(&known).collect::<Vec<_>>(),
                known.difference(&present).collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    /// A table as its migrations declare it: columns with their kinds, primary key, generated id.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Declared {
        columns: BTreeMap<String, Kind>,
        key: Vec<String>,
        generated_id: bool,
    }

    /// The tables a migration's table references (`REFERENCES parent`), by table.
    type References = BTreeMap<String, BTreeSet<String>>;

    fn kind_of(table: &str, column: &str, sql_type: &str) -> Kind {
        match sql_type.to_ascii_uppercase().as_str() {
            "INTEGER" | "BIGINT" => Int,
            "TEXT" => Text,
            "BOOLEAN" => Bool,
            other => panic!("{table}.{column}: the copy has no kind for the SQL type {other}"),
        }
    }

    /// Splits at the commas outside parentheses.
    fn top_level_items(body: &str) -> Vec<&str> {
        let (mut items, mut depth, mut start) = (Vec::new(), 0i32, 0);
        for (at, character) in body.char_indices() {
            match character {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(body[start..at].trim());
                    start = at + 1;
                }
                _ => {}
            }
        }
        items.push(body[start..].trim());
        items
    }

    /// Reads `CREATE TABLE` and `ALTER TABLE ... ADD COLUMN` of every migration in `dir`, in order.
    fn declared_schema(dir: &Path) -> (BTreeMap<String, Declared>, References) {
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().path()).collect();
        files.sort();
        let mut tables: BTreeMap<String, Declared> = BTreeMap::new();
        let mut references = References::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code: String = text
                .lines()
                .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
                .collect::<Vec<_>>()
                .join("\n");
            for statement in code.split(';') {
                let words: Vec<&str> = statement.split_whitespace().collect();
                let upper: Vec<String> = words.iter().take(5).map(|word| word.to_ascii_uppercase()).collect();
                match upper.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                    ["CREATE", "TABLE", ..] => {
                        let name = words[2].trim_end_matches('(').to_owned();
                        let open = statement.find('(').unwrap();
                        let close = statement.rfind(')').unwrap();
                        let mut table = Declared::default();
                        for item in top_level_items(&statement[open + 1..close]) {
                            let parts: Vec<&str> = item.split_whitespace().collect();
                            let first = parts[0].to_ascii_uppercase();
                            if first == "PRIMARY" {
                                let inner = &item[item.find('(').unwrap() + 1..item.rfind(')').unwrap()];
                                table.key = inner.split(',').map(|part| part.trim().to_owned()).collect();
                                continue;
                            }
                            if ["UNIQUE", "CHECK", "FOREIGN", "CONSTRAINT"].contains(&first.as_str()) {
                                continue;
                            }
                            let upper_item = item.to_ascii_uppercase();
                            if let Some(at) = parts.iter().position(|part| part.eq_ignore_ascii_case("REFERENCES")) {
                                references.entry(name.clone()).or_default().insert(parts[at + 1].to_owned());
                            }
                            if upper_item.contains("PRIMARY KEY") {
                                table.key = vec![parts[0].to_owned()];
                            }
                            if upper_item.contains("AUTOINCREMENT")
                                || upper_item.contains("GENERATED BY DEFAULT AS IDENTITY")
                            {
                                assert_eq!(parts[0], "id", "{name}: a generated column other than id");
                                table.generated_id = true;
                            }
                            table.columns.insert(parts[0].to_owned(), kind_of(&name, parts[0], parts[1]));
                        }
                        assert!(tables.insert(name.clone(), table).is_none(), "{name} created twice");
                    }
                    ["ALTER", "TABLE", _, "ADD", ..] if !statement.to_ascii_uppercase().contains("REFERENCES") => {
                        let column_at = if upper[4] == "COLUMN" { 5 } else { 4 };
                        let (table, column) = (words[2], words[column_at]);
                        let kind = kind_of(table, column, words[column_at + 1]);
                        tables.get_mut(table).unwrap().columns.insert(column.to_owned(), kind);
                    }
                    ["ALTER", ..] | ["DROP", ..] => {
                        panic!("{}: the copy's schema test does not read {:?} yet", file.display(), words.join(" "))
                    }
                    _ => {}
                }
            }
        }
        (tables, references)
    }

    fn known_schema() -> BTreeMap<String, Declared> {
        TABLES
            .iter()
            .map(|table| {
                let columns = table.columns.iter().map(|&(name, kind)| (name.to_owned(), kind)).collect();
                let key = table.key.iter().map(|part| (*part).to_owned()).collect();
                (table.name.to_owned(), Declared { columns, key, generated_id: table.generated_id })
            })
            .collect()
    }

    #[test]
    fn the_copy_knows_every_table_and_column_of_both_engines_migrations() {
        let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for engine in ["sqlite", "postgres"] {
            let (declared, _) = declared_schema(&migrations.join(engine));
            let known = known_schema();
            for name in declared.keys().chain(known.keys()) {
                assert_eq!(
                    declared.get(name),
                    known.get(name),
                    "table {name}: migrations/{engine} (left) against copy.rs's TABLES (right)"
                );
            }
        }
    }

    #[test]
    fn tables_are_copied_after_the_tables_they_reference_and_a_batch_fits_both_engines() {
        let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for engine in ["sqlite", "postgres"] {
            let (_, references) = declared_schema(&migrations.join(engine));
            let position = |name: &str| TABLES.iter().position(|table| table.name == name).unwrap();
            for (child, parents) in &references {
                for parent in parents {
                    assert!(position(parent) < position(child), "{child} references {parent}, copied later");
                }
            }
        }
        for table in TABLES {
            assert!(
                table.columns.len() * BATCH <= 32_766,
                "{}: an INSERT of {BATCH} rows binds too many values",
                table.name
            );
        }
    }
}
