//! How the commands print lists and records: for people, an aligned table
//! with a header line (or aligned `key: value` lines) and readable UTC
//! times; with `--json`, one JSON document for scripts, times in Unix
//! seconds.

use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use serde_json::{Value, json};

use super::Lines;

/// The `--json` flag of every list and show command.
#[derive(Args, Clone, Copy)]
pub(super) struct Format {
    /// Print JSON for scripts (times in Unix seconds) instead of a table.
    #[arg(long)]
    pub(super) json: bool,
}

/// One value of a table: how it reads in a table and in JSON.
pub(super) enum Cell {
    /// Text as it is; `-` in a table when empty.
    Text(String),
    /// A Unix time: `2026-12-05 06:53:08 UTC` in a table, a number in JSON.
    Time(Option<i64>),
    /// Words: joined by `, ` in a table, an array in JSON.
    List(Vec<String>),
    /// `yes`/`no` in a table, a boolean in JSON.
    Flag(bool),
    /// A number.
    Number(i64),
}

impl Cell {
    /// `text` as a text cell.
    pub(super) fn text(text: impl Into<String>) -> Cell {
        Cell::Text(text.into())
    }

    /// A JSON value as a cell: strings, booleans, whole numbers and lists of
    /// strings as such, anything else as its JSON text.
    pub(super) fn from_json(value: Value) -> Cell {
        match value {
            Value::String(s) => Cell::Text(s),
            Value::Bool(b) => Cell::Flag(b),
            Value::Null => Cell::Text(String::new()),
            Value::Number(n) if n.is_i64() => Cell::Number(n.as_i64().unwrap_or_default()),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                Cell::List(items.into_iter().filter_map(|i| i.as_str().map(str::to_owned)).collect())
            }
            other => Cell::Text(other.to_string()),
        }
    }

    fn shown(&self) -> String {
        match self {
            Cell::Text(t) if t.is_empty() => "-".to_owned(),
            Cell::Text(t) => t.clone(),
            Cell::Time(Some(t)) => readable_time(*t),
            Cell::Time(None) => "-".to_owned(),
            Cell::List(l) if l.is_empty() => "-".to_owned(),
            Cell::List(l) => l.join(", "),
            Cell::Flag(b) => if *b { "yes" } else { "no" }.to_owned(),
            Cell::Number(n) => n.to_string(),
        }
    }

    fn json(self) -> Value {
        match self {
            Cell::Text(t) => Value::String(t),
            Cell::Time(t) => json!(t),
            Cell::List(l) => json!(l),
            Cell::Flag(b) => Value::Bool(b),
            Cell::Number(n) => json!(n),
        }
    }
}

/// A Unix time as `2026-12-05 06:53:08 UTC`.
fn readable_time(unix: i64) -> String {
    let Ok(secs) = u64::try_from(unix) else { return unix.to_string() };
    let rfc3339 = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
    format!("{} UTC", rfc3339.trim_end_matches('Z').replacen('T', " ", 1))
}

/// Rows under named columns: a list command's answer.
pub(super) struct Table {
    columns: &'static [&'static str],
    rows: Vec<Vec<Cell>>,
}

impl Table {
    /// An empty table; `columns` are the JSON keys, upper-cased for the header.
    pub(super) fn new(columns: &'static [&'static str]) -> Table {
        Table { columns, rows: Vec::new() }
    }

    /// Adds a row, one cell per column.
    pub(super) fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "one cell per column");
        self.rows.push(row);
    }

    /// The lines to print: the table, or a JSON array of objects.
    pub(super) fn print(self, format: Format) -> Lines {
        if format.json {
            let rows: Vec<String> = self
                .rows
                .into_iter()
                .map(|row| object(self.columns.iter().copied().zip(row.into_iter().map(Cell::json))))
                .collect();
            return Ok(vec![format!("[{}]", rows.join(","))]);
        }
        let header: Vec<String> = self.columns.iter().map(|c| c.replace('_', " ").to_uppercase()).collect();
        let cells: Vec<Vec<String>> =
            self.rows.iter().map(|row| row.iter().map(Cell::shown).collect()).collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |row: &[String]| {
            let mut out = String::new();
            for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.push_str(&" ".repeat(width - cell.chars().count() + 2));
                }
            }
            out
        };
        let mut out = vec![line(&header)];
        out.extend(cells.iter().map(|row| line(row)));
        Ok(out)
    }
}

/// One record as `key: value` lines (keys aligned), or a JSON object.
pub(super) fn record<K: AsRef<str>>(fields: Vec<(K, Cell)>, format: Format) -> Lines {
    if format.json {
        return Ok(vec![object(fields.into_iter().map(|(k, v)| (k, v.json())))]);
    }
    let width = fields.iter().map(|(k, _)| k.as_ref().len()).max().unwrap_or(0) + 1;
    Ok(fields.iter().map(|(k, v)| format!("{:width$} {}", format!("{}:", k.as_ref()), v.shown())).collect())
}

/// A JSON object with its keys in the order given (the columns' order).
fn object<K: AsRef<str>>(fields: impl Iterator<Item = (K, Value)>) -> String {
    let fields: Vec<String> = fields.map(|(k, v)| format!("{}:{v}", Value::from(k.as_ref()))).collect();
    format!("{{{}}}", fields.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_under_a_header_and_json_keeps_the_types() {
        let mut table = Table::new(&["name", "roles", "created_at", "admin"]);
        table.push(vec![
            Cell::text("alice"),
            Cell::List(vec!["a".into(), "b".into()]),
            Cell::Time(Some(0)),
            Cell::Flag(true),
        ]);
        table.push(vec![Cell::text("bob-the-long"), Cell::List(vec![]), Cell::Time(None), Cell::Flag(false)]);
        let text = Table { columns: table.columns, rows: std::mem::take(&mut table.rows) };
        let lines = text.print(Format { json: false }).unwrap();
        assert_eq!(
            lines,
            [
                "NAME          ROLES  CREATED AT               ADMIN",
                "alice         a, b   1970-01-01 00:00:00 UTC  yes",
                "bob-the-long  -      -                        no",
            ]
        );
        table.push(vec![
            Cell::text("carol"),
            Cell::List(vec!["r".into()]),
            Cell::Time(Some(60)),
            Cell::Flag(true),
        ]);
        let json = table.print(Format { json: true }).unwrap();
        assert_eq!(json, [r#"[{"name":"carol","roles":["r"],"created_at":60,"admin":true}]"#]);
    }

    #[test]
    fn records_align_their_keys() {
        let lines =
            record(vec![("id", Cell::Number(7)), ("label", Cell::text(""))], Format { json: false }).unwrap();
        assert_eq!(lines, ["id:    7", "label: -"]);
    }
}
