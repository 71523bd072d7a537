//! `vgashot history NAME`: an instance's screen history, one screenshot a line, from
//! `GET /1.0/instances/NAME/screenshots?recursion=1` (with `since`, `until`, `reason` passed as
//! they are). `vgashot screenshot NAME --at TIME` fetches one of them as an image.

use std::path::Path;

use clap::Args;
use serde_json::Value;

use super::connection::{self, ConnectionArgs};
use super::list::{OutputFormat, bordered, csv_lines};
use super::{CliError, instance_path, picture};

/// `vgashot history ...`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The instance whose history to list.
    pub name: String,
    /// Only screenshots taken at or after this time (RFC 3339, UTC: 2026-12-02T01:30:00Z).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only screenshots taken at or before this time (RFC 3339, UTC).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only screenshots recorded for this reason (change, stop, shutdown, panic, crash, manual).
    #[arg(long)]
    pub reason: Option<String>,
    /// The project of the instance.
    #[arg(long, default_value = "default")]
    pub project: String,
    /// How to print: a table, CSV (no header) or the API's JSON.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Lists the history.
pub async fn run(dir: &Path, args: HistoryArgs) -> Result<(), CliError> {
    let mut query = vec![("recursion", "1".to_owned())];
    if args.project != "default" {
        query.push(("project", args.project.clone()));
    }
    for (key, value) in [
        ("since", &args.since),
        ("until", &args.until),
        ("reason", &args.reason),
    ] {
        if let Some(value) = value {
            query.push((key, value.clone()));
        }
    }
    let client = connection::connect(dir, &args.connection).await?;
    let shots = client
        .call(
            "GET",
            &instance_path(&args.name, "/screenshots", &query),
            None,
        )
        .await?;
    let shots = shots.as_array().map(Vec::as_slice).unwrap_or_default();
    let body: Vec<Vec<String>> = shots.iter().map(cells).collect();
    let output = match args.format {
        OutputFormat::Table => bordered(
            &[
                "ID", "TAKEN AT", "REASON", "SIZE", "STORED", "PINNED", "NOTE",
            ],
            &body,
        ),
        OutputFormat::Csv => csv_lines(&body),
        OutputFormat::Json => format!("{}\n", Value::Array(shots.to_vec())),
    };
    print!("{output}");
    Ok(())
}

/// One screenshot's columns.
fn cells(shot: &Value) -> Vec<String> {
    let text = |key: &str| shot[key].as_str().unwrap_or_default().to_owned();
    let number = |key: &str| shot[key].as_u64().unwrap_or_default();
    vec![
        shot["id"].to_string(),
        text("taken_at"),
        text("reason"),
        format!("{}x{}", number("width"), number("height")),
        picture::byte_size(usize::try_from(number("stored_bytes")).unwrap_or(usize::MAX)),
        if shot["pinned"] == Value::Bool(true) {
            "yes".to_owned()
        } else {
            String::new()
        },
        text("note"),
    ]
}
