//! `vgashot history NAME`: an instance's screen history, one screenshot a line, from
//! `GET /1.0/instances/NAME/screenshots?recursion=1` (with `since`, `until`, `reason` passed as
//! they are). `vgashot screenshot NAME --at TIME` fetches one of them as an image.

use std::path::Path;

use clap::Args;
use vgashot_client::HistoryFilter;
use vgashot_incus_wire::Screenshot;

use super::connection::{self, ConnectionArgs};
use super::list::{OutputFormat, bordered, csv_lines};
use super::{CliError, picture};

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
    let filter = HistoryFilter {
        since: args.since,
        until: args.until,
        reason: args.reason,
    };
    let project = (args.project != "default").then_some(args.project.as_str());
    let client = connection::connect(dir, &args.connection).await?;
    let shots = client.screenshots(&args.name, project, &filter).await?;
    let body: Vec<Vec<String>> = shots.iter().map(cells).collect();
    let output = match args.format {
        OutputFormat::Table => bordered(
            &[
                "ID", "TAKEN AT", "REASON", "SIZE", "STORED", "PINNED", "NOTE",
            ],
            &body,
        ),
        OutputFormat::Csv => csv_lines(&body),
        OutputFormat::Json => format!(
            "{}\n",
            serde_json::to_string(&shots).map_err(vgashot_client::ClientError::Json)?
        ),
    };
    print!("{output}");
    Ok(())
}

/// One screenshot's columns.
fn cells(shot: &Screenshot) -> Vec<String> {
    vec![
        shot.id.to_string(),
        shot.taken_at.clone(),
        shot.reason.clone(),
        format!("{}x{}", shot.width, shot.height),
        picture::byte_size(usize::try_from(shot.stored_bytes).unwrap_or(usize::MAX)),
        if shot.pinned { "yes" } else { "" }.to_owned(),
        shot.note.clone(),
    ]
}
