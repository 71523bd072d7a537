//! `vgashot list`: the instances of a project, as `incus list` shows them.
//!
//! One `GET /1.0/instances?recursion=1` gives every instance with its status. Screen sizes are
//! not free: the API has no way to learn a screen's size without capturing it, so `list` shows
//! them only when asked (`--screens`), and then reads just the first 24 bytes of each running
//! VM's plain PNG (its `IHDR`) before hanging up. The capture is shared with every other viewer
//! of that screen for `console.screenshot.min_interval`, and at most [`SCREEN_PROBES`] run at
//! once, so listing many VMs does not stall them all together.

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use clap::{Args, ValueEnum};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use vgashot_client::Client;

use super::connection::{self, ConnectionArgs};
use super::screenshot::ScreenArgs;
use super::{CliError, instance_path, picture};

/// Screens probed at once by `--screens`.
pub const SCREEN_PROBES: usize = 4;

/// `vgashot list ...`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The project whose instances to list.
    #[arg(long, default_value = "default")]
    pub project: String,
    /// How to print: a table for people, CSV (no header, as `incus list -f csv`) or JSON for
    /// scripts.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Add each running VM's screen size (a SCREEN column): this takes a screenshot of every
    /// running VM, shared with anyone watching it.
    #[arg(long)]
    pub screens: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Output formats of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table with borders, as `incus list`.
    Table,
    /// Comma-separated values, one instance a line.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// One instance, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    name: String,
    status: String,
    kind: String,
    screen: Option<(u32, u32)>,
}

/// Lists the instances.
pub async fn run(dir: &Path, args: ListArgs) -> Result<(), CliError> {
    let client = connection::connect(dir, &args.connection).await?;
    let project = (args.project != "default").then_some(args.project.as_str());
    let mut rows: Vec<Row> = client
        .instances(project)
        .await?
        .into_iter()
        .map(|instance| Row {
            name: instance.name,
            status: instance.status,
            kind: instance.kind,
            screen: None,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if args.screens {
        screens(&client, &args.project, &mut rows).await;
    }
    let output = match args.format {
        OutputFormat::Table => table(&rows, args.screens),
        OutputFormat::Csv => csv(&rows, args.screens),
        OutputFormat::Json => {
            let list: Vec<Value> = rows
                .iter()
                .map(|row| {
                    let mut object =
                        json!({"name": row.name, "status": row.status, "type": row.kind});
                    if args.screens {
                        object["screen"] = match row.screen {
                            Some((width, height)) => json!({"width": width, "height": height}),
                            None => Value::Null,
                        };
                    }
                    object
                })
                .collect();
            format!("{}\n", Value::Array(list))
        }
    };
    print!("{output}");
    Ok(())
}

/// Fills in the screen sizes of the running instances, [`SCREEN_PROBES`] at a time; a screen
/// that cannot be read (no display, stopped meanwhile) stays empty.
async fn screens(client: &Client, project: &str, rows: &mut [Row]) {
    let permits = Arc::new(tokio::sync::Semaphore::new(SCREEN_PROBES));
    let mut probes = tokio::task::JoinSet::new();
    for (index, row) in rows.iter().enumerate() {
        if row.status != "Running" {
            continue;
        }
        let path = instance_path(
            &row.name,
            "/console",
            &ScreenArgs {
                device: None,
                head: None,
                project: project.to_owned(),
            }
            .query(Vec::new()),
        );
        let (client, permits) = (client.clone(), permits.clone());
        probes.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (index, screen_size(&client, &path).await)
        });
    }
    while let Some(Ok((index, size))) = probes.join_next().await {
        rows[index].screen = size;
    }
}

/// The size of the screen at `path`, from the first bytes of its PNG; the rest of the body is
/// never read (dropping it closes the connection).
async fn screen_size(client: &Client, path: &str) -> Option<(u32, u32)> {
    let response = client.send("GET", path, &[], None).await.ok()?;
    if response.status() != 200 {
        return None;
    }
    let mut body = response.into_body();
    let mut head = BytesMut::new();
    while head.len() < picture::PNG_HEADER_LEN {
        let frame = body.frame().await?.ok()?;
        if let Ok(data) = frame.into_data() {
            head.extend_from_slice(&data);
        }
    }
    picture::dimensions(&head)
}

/// What a row shows in its columns, in `incus list`'s words (`RUNNING`, `VIRTUAL-MACHINE`).
fn cells(row: &Row, screens: bool) -> Vec<String> {
    let mut cells = vec![
        row.name.clone(),
        row.status.to_uppercase(),
        row.kind.to_uppercase(),
    ];
    if screens {
        cells.push(
            row.screen
                .map(|(width, height)| format!("{width}x{height}"))
                .unwrap_or_default(),
        );
    }
    cells
}

/// `incus list`'s table of the instances.
fn table(rows: &[Row], screens: bool) -> String {
    let mut headers = vec!["NAME", "STATUS", "TYPE"];
    if screens {
        headers.push("SCREEN");
    }
    let body: Vec<Vec<String>> = rows.iter().map(|row| cells(row, screens)).collect();
    bordered(&headers, &body)
}

/// `incus list`'s table: bordered, headers centred, cells left-aligned.
pub(super) fn bordered(headers: &[&str], body: &[Vec<String>]) -> String {
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(column, header)| {
            body.iter()
                .map(|cells| cells[column].chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or_default()
        })
        .collect();
    let rule = widths.iter().fold(String::from("+"), |mut line, width| {
        line.push_str(&"-".repeat(width + 2));
        line.push('+');
        line
    });
    let mut out = format!("{rule}\n|");
    for (header, width) in headers.iter().zip(&widths) {
        out.push_str(&format!(" {header:^width$} |"));
    }
    out.push_str(&format!("\n{rule}\n"));
    for cells in body {
        out.push('|');
        for (cell, width) in cells.iter().zip(&widths) {
            out.push_str(&format!(" {cell:<width$} |"));
        }
        out.push_str(&format!("\n{rule}\n"));
    }
    out
}

/// One line per instance, quoted as RFC 4180 asks when a cell needs it.
fn csv(rows: &[Row], screens: bool) -> String {
    let body: Vec<Vec<String>> = rows.iter().map(|row| cells(row, screens)).collect();
    csv_lines(&body)
}

/// One line per row of `body`, quoted as RFC 4180 asks when a cell needs it.
pub(super) fn csv_lines(body: &[Vec<String>]) -> String {
    let quote = |cell: &str| {
        if cell.contains([',', '"', '\n']) {
            format!("\"{}\"", cell.replace('"', "\"\""))
        } else {
            cell.to_owned()
        }
    };
    body.iter()
        .map(|cells| {
            let line: Vec<String> = cells.iter().map(|c| quote(c)).collect();
            format!("{}\n", line.join(","))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row {
                name: "v1".into(),
                status: "Running".into(),
                kind: "virtual-machine".into(),
                screen: Some((640, 480)),
            },
            Row {
                name: "longer-name".into(),
                status: "Stopped".into(),
                kind: "virtual-machine".into(),
                screen: None,
            },
        ]
    }

    #[test]
    fn tables_look_like_incus_list() {
        assert_eq!(
            table(&rows(), false),
            "\
+-------------+---------+-----------------+
|    NAME     | STATUS  |      TYPE       |
+-------------+---------+-----------------+
| v1          | RUNNING | VIRTUAL-MACHINE |
+-------------+---------+-----------------+
| longer-name | STOPPED | VIRTUAL-MACHINE |
+-------------+---------+-----------------+
"
        );
        assert!(table(&rows(), true).contains("| 640x480 |"));
        assert_eq!(
            table(&[], false),
            "+------+--------+------+\n| NAME | STATUS | TYPE |\n+------+--------+------+\n"
        );
    }

    #[test]
    fn csv_lines() {
        assert_eq!(
            csv(&rows(), true),
            "v1,RUNNING,VIRTUAL-MACHINE,640x480\nlonger-name,STOPPED,VIRTUAL-MACHINE,\n"
        );
        let mut odd = rows();
        odd[0].name = "a,\"b".into();
        assert!(csv(&odd, false).starts_with("\"a,\"\"b\",RUNNING"));
    }
}
