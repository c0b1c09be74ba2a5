//! `rampart import contacts --workspace WS --file F.csv`: bulk import of contacts from CSV.
//!
//! The file has a header row naming the columns `name`, `email`, `phone`, `us_state` and `tags`
//! (any order; `email` is required, the others may be left out; `tags` are `;`-separated).
//! Every row is validated with the same field types the API uses (`PersonName`, `Email`,
//! `Phone`, `UsState`, `Tag`). A row that fails, or whose email is already in the workspace or
//! earlier in the file, is reported on standard error with its line number and skipped; the
//! good rows are imported. With `--strict` the first bad row stops the import and nothing is
//! written (the whole import is then one transaction).
//!
//! Rows are written [`BATCH`] at a time in one write transaction each, through
//! `rampart_store::contacts::create_many` (multi-row inserts): each contact gets its tags and a
//! version-1 `create` entry in version history, as one created over the API would. The audit
//! ledger gets **one `contact.import` event per batch** (actor `operator`, method `CLI`), naming
//! the file, the line range and how many contacts it created, in the batch's own transaction —
//! not one event per contact, which would double the writes of a large import while telling an
//! auditor nothing more than "the operator imported this file".

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use rampart_audit::redact_args;
use rampart_core::{
    AuthMethod, Clock, ContactText, Email, OperatorGrant, SystemClock, TenantGrant, WorkspaceId,
};
use rampart_store::audit::{self, NewEvent};
use rampart_store::contacts::{self, NewContact, PreparedContact};
use rampart_store::{BackendKind, Mode, Store, TenantTx};
use serde_json::json;
use tokio::sync::oneshot;

use crate::config::{Database, Settings};

/// Contacts per write transaction (and per audit event).
pub const BATCH: usize = 5_000;
/// Bad rows printed one by one before the rest are only counted.
const SHOWN_ERRORS: u64 = 1_000;

/// `rampart import contacts`.
#[derive(Args, Debug, Clone)]
pub struct ImportContactsArgs {
    /// The workspace to import into (`ws_…`).
    #[arg(long)]
    pub workspace: WorkspaceId,
    /// The CSV file: a header row, then name,email,phone,us_state,tags.
    #[arg(long)]
    pub file: PathBuf,
    /// Stop at the first bad row and import nothing.
    #[arg(long)]
    pub strict: bool,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Data rows read.
    pub rows: u64,
    /// Contacts created.
    pub imported: u64,
    /// Rows refused.
    pub rejected: u64,
    /// Write transactions committed.
    pub batches: u64,
}

/// Column positions in the header.
struct Columns {
    name: Option<usize>,
    email: usize,
    phone: Option<usize>,
    us_state: Option<usize>,
    tags: Option<usize>,
}

impl Columns {
    fn from_header(header: &csv::StringRecord) -> Result<Self> {
        let find = |name: &str| {
            header
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case(name))
        };
        for h in header {
            let h = h.trim().to_ascii_lowercase();
            if !["name", "email", "phone", "us_state", "tags"].contains(&h.as_str()) {
                bail!("unknown column `{h}` (expected name, email, phone, us_state, tags)");
            }
        }
        Ok(Self {
            name: find("name"),
            email: find("email").ok_or_else(|| anyhow!("the header has no `email` column"))?,
            phone: find("phone"),
            us_state: find("us_state"),
            tags: find("tags"),
        })
    }
}

/// A field's text, `None` when the column is absent or the cell is blank.
fn cell(record: &csv::StringRecord, col: Option<usize>) -> Option<&str> {
    col.and_then(|c| record.get(c))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Validates one row into a contact and its normalized email, or says what is wrong.
fn parse_row(cols: &Columns, record: &csv::StringRecord) -> Result<(NewContact, String), String> {
    // The import keys rows by email (duplicates within the file and the workspace), so it
    // needs one; every other rule is the API's own (`ContactText::validate`).
    let email = cell(record, Some(cols.email)).ok_or_else(|| "email: is required".to_owned())?;
    let fields = ContactText {
        name: cell(record, cols.name),
        email: Some(email),
        phone: cell(record, cols.phone),
        us_state: cell(record, cols.us_state),
        tags: cell(record, cols.tags)
            .map(|v| {
                v.split(';')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    }
    .validate()
    .map_err(|e| e.to_string())?;
    let normalized = fields
        .email
        .as_ref()
        .map(Email::normalized)
        .ok_or_else(|| "email: is required".to_owned())?;
    Ok((
        NewContact::from_fields(fields, serde_json::Map::new()),
        normalized,
    ))
}

/// How an import reads its file: a header row, and rows that may have fewer or more cells.
fn csv_reader() -> csv::ReaderBuilder {
    let mut builder = csv::ReaderBuilder::new();
    builder.has_headers(true).flexible(true);
    builder
}

/// Reads and validates CSV `data` as an import does, without a database: the header, then for
/// each data row the normalized email of the contact it would create (prepared for
/// `workspace` as the import prepares it), or why it is refused. A header an import would
/// refuse is an error. Never panics, whatever the bytes (the fuzz target `csv_rows` checks).
pub fn validate_csv(data: &[u8], workspace: WorkspaceId) -> Result<Vec<Result<String, String>>> {
    let mut reader = csv_reader().from_reader(data);
    let cols = Columns::from_header(reader.headers().context("reading the CSV header")?)?;
    let now = SystemClock.now();
    let mut out = Vec::new();
    for record in reader.records() {
        out.push(match record {
            Err(e) => Err(format!("unreadable row: {e}")),
            Ok(record) => parse_row(&cols, &record).and_then(|(contact, email)| {
                PreparedContact::new(workspace, contact, now)
                    .map(|_| email)
                    .map_err(|e| format!("cannot prepare the row: {e}"))
            }),
        });
    }
    Ok(out)
}

/// One validated row waiting for its batch.
struct Pending {
    line: u64,
    contact: PreparedContact,
    email: String,
}

/// What the reading thread hands the writer: a batch of valid rows and the rows refused on the
/// way (line and reason), in file order.
struct Parsed {
    rows: Vec<Pending>,
    refused: Vec<(u64, String)>,
    /// Data rows read for this batch (valid or not).
    read: u64,
    /// Where the reader is in the file, for the progress bar.
    byte: u64,
}

/// Runs `rampart import contacts`.
pub async fn run(settings: &Settings, args: ImportContactsArgs) -> Result<()> {
    if let Database::Sqlite(path) = settings.database()?
        && !path.is_file()
    {
        bail!(
            "no database at {}: run `rampart migrate` and create the workspace first",
            path.display()
        );
    }
    let store = super::open::open(settings).await?;
    let result = import(&store, &args).await;
    store.close().await;
    let summary = result?;
    if args.json {
        println!("{}", serde_json::to_value(summary)?);
    } else {
        println!(
            "imported {} of {} rows into {} ({} rejected, {} batches)",
            summary.imported, summary.rows, args.workspace, summary.rejected, summary.batches
        );
    }
    Ok(())
}

/// Reads and validates the file on this (blocking) thread and prepares each valid row for
/// `workspace` ([`PreparedContact`]: id, stored form, history entry), sending batches of
/// [`BATCH`] rows to `out`; stops early when the receiver is gone (the writer failed or
/// `--strict` stopped). A batch's contacts are created at the time its first row was read.
fn read_file(
    mut reader: csv::Reader<std::io::BufReader<std::fs::File>>,
    cols: &Columns,
    workspace: WorkspaceId,
    out: &tokio::sync::mpsc::Sender<Parsed>,
) -> Result<()> {
    let mut now = SystemClock.now();
    let mut batch = Parsed {
        rows: Vec::with_capacity(BATCH),
        refused: Vec::new(),
        read: 0,
        byte: 0,
    };
    // This batch's emails and the previous batch's: the writer may still be writing the
    // previous batch when this one's check for emails already taken runs, so a repeat of one
    // of its rows is caught here; repeats of older batches, committed by then, are caught by
    // that check.
    let mut in_batch: HashSet<String> = HashSet::with_capacity(BATCH);
    let mut in_previous: HashSet<String> = HashSet::with_capacity(BATCH);
    let mut record = csv::StringRecord::new();
    loop {
        let more = match reader.read_record(&mut record) {
            Ok(more) => more,
            Err(e) => {
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    return Err(e.into());
                }
                // A malformed row (bad UTF-8, say): the reader resumes at the next one.
                let line = e.position().map_or(0, csv::Position::line);
                batch.read += 1;
                batch.refused.push((line, format!("unreadable row: {e}")));
                continue;
            }
        };
        if more {
            batch.read += 1;
            let line = record.position().map_or(0, csv::Position::line);
            match parse_row(cols, &record) {
                Ok((contact, email))
                    if !in_previous.contains(&email) && in_batch.insert(email.clone()) =>
                {
                    batch.rows.push(Pending {
                        line,
                        contact: PreparedContact::new(workspace, contact, now)?,
                        email,
                    })
                }
                Ok(_) => batch
                    .refused
                    .push((line, "email: appears earlier in the file".to_owned())),
                Err(why) => batch.refused.push((line, why)),
            }
        }
        if batch.rows.len() >= BATCH || !more {
            batch.byte = record.position().map_or(0, csv::Position::byte);
            let full = std::mem::replace(
                &mut batch,
                Parsed {
                    rows: Vec::with_capacity(BATCH),
                    refused: Vec::new(),
                    read: 0,
                    byte: 0,
                },
            );
            std::mem::swap(&mut in_batch, &mut in_previous);
            in_batch.clear();
            now = SystemClock.now();
            if out.blocking_send(full).is_err() {
                return Ok(());
            }
        }
        if !more {
            return Ok(());
        }
    }
}

/// Imports the file into the workspace and returns what happened. Reading, validating and
/// preparing rows run on a blocking thread while this task writes the previous batch, so on a
/// machine with two cores parsing and the database overlap.
pub async fn import(store: &Store, args: &ImportContactsArgs) -> Result<Summary> {
    let started = Instant::now();
    let Some((org, _plan)) = store.workspace_org(args.workspace).await? else {
        bail!("workspace {} not found", args.workspace);
    };
    let grant = OperatorGrant::new(org).in_workspace(args.workspace);
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = csv_reader().from_reader(std::io::BufReader::with_capacity(1 << 20, file));
    let cols = Columns::from_header(reader.headers().context("reading the CSV header")?)?;
    let bar = super::progress(size, "importing contacts");
    let file_name = args
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();

    let (send, mut batches) = tokio::sync::mpsc::channel::<Parsed>(2);
    let workspace = args.workspace;
    let reading = tokio::task::spawn_blocking(move || read_file(reader, &cols, workspace, &send));

    let mut summary = Summary::default();
    // In strict mode one transaction holds the whole import.
    let mut strict_tx: Option<TenantTx> = None;
    let written = if args.strict {
        let tx = strict_tx.insert(store.tenant(&grant, Mode::Write).await?);
        write_strict(tx, &mut batches, &file_name, &mut summary, &bar).await
    } else {
        write_in_turn(store, grant, &mut batches, &file_name, &mut summary, &bar).await
    };
    // On a write error the receiver is dropped here, which stops the reader at its next batch.
    drop(batches);
    let read = reading.await.context("the CSV reader thread failed")?;
    written?;
    read?;
    if let Some(tx) = strict_tx {
        tx.commit().await?;
    }
    bar.finish_and_clear();
    if summary.rejected > SHOWN_ERRORS {
        eprintln!(
            "… and {} more rejected rows",
            summary.rejected - SHOWN_ERRORS
        );
    }
    tracing::info!(
        rows = summary.rows,
        imported = summary.imported,
        rejected = summary.rejected,
        seconds = started.elapsed().as_secs_f64(),
        "import finished"
    );
    Ok(summary)
}

/// Reports a bad row (or, in strict mode, stops with it).
fn reject(summary: &mut Summary, strict: bool, line: u64, why: &str) -> Result<()> {
    summary.rejected += 1;
    if strict {
        bail!("line {line}: {why} (--strict: nothing was imported)");
    }
    if summary.rejected <= SHOWN_ERRORS {
        eprintln!("line {line}: {why}");
    }
    Ok(())
}

/// Writes every batch into `tx`, the one transaction of a `--strict` import, stopping at the
/// first bad row.
async fn write_strict(
    tx: &mut TenantTx,
    batches: &mut tokio::sync::mpsc::Receiver<Parsed>,
    file_name: &str,
    summary: &mut Summary,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    while let Some(parsed) = batches.recv().await {
        summary.rows += parsed.read;
        for (line, why) in &parsed.refused {
            reject(summary, true, *line, why)?;
        }
        if !parsed.rows.is_empty() {
            let written = write_batch(tx, parsed.rows, file_name, true).await?;
            tally(summary, &written, true)?;
        }
        bar.set_position(parsed.byte);
    }
    Ok(())
}

/// Writes each batch in a transaction of its own, committed in file order. On PostgreSQL a
/// batch is written while the one before it is still being written (one backend process does a
/// batch's row-level-security, foreign-key and index work, so two use both cores of a small
/// machine) and commits only once that one has: an import that fails leaves every batch before
/// the failure committed and none after it, as when one batch was written at a time. SQLite has
/// one writer, which a batch holds until it commits, so there one batch is written at a time.
async fn write_in_turn(
    store: &Store,
    grant: TenantGrant,
    batches: &mut tokio::sync::mpsc::Receiver<Parsed>,
    file_name: &str,
    summary: &mut Summary,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let overlap = store.kind() == BackendKind::Postgres;
    let mut writing: Option<InFlight> = None;
    // Resolves when the batch before the next one has committed; dropped unsent if it failed.
    let mut committed: Option<oneshot::Receiver<()>> = None;
    while let Some(parsed) = batches.recv().await {
        // Opened here, in file order: a batch waits for its connection only behind the batches
        // before it, never behind a later one that would in turn wait for its commit (with a
        // pool of one connection the batches simply take turns).
        let tx = if parsed.rows.is_empty() {
            None
        } else {
            Some(store.tenant(&grant, Mode::Write).await?)
        };
        let (done, next) = oneshot::channel();
        let task = tokio::spawn(write_after(
            tx,
            parsed.rows,
            file_name.to_owned(),
            committed.replace(next),
            done,
        ));
        let batch = InFlight {
            task,
            read: parsed.read,
            refused: parsed.refused,
            byte: parsed.byte,
        };
        if let Some(earlier) = writing.replace(batch) {
            earlier.finish(summary, bar).await?;
        }
        if !overlap && let Some(batch) = writing.take() {
            batch.finish(summary, bar).await?;
        }
    }
    match writing {
        Some(batch) => batch.finish(summary, bar).await,
        None => Ok(()),
    }
}

/// A batch being written by its own task, and what the reader found in it.
struct InFlight {
    task: tokio::task::JoinHandle<Result<Option<Written>>>,
    read: u64,
    refused: Vec<(u64, String)>,
    byte: u64,
}

impl InFlight {
    /// Waits for the batch to commit, then reports its rows.
    async fn finish(self, summary: &mut Summary, bar: &indicatif::ProgressBar) -> Result<()> {
        let written = self.task.await.context("a batch's writer failed")??;
        summary.rows += self.read;
        for (line, why) in &self.refused {
            reject(summary, false, *line, why)?;
        }
        if let Some(written) = written {
            tally(summary, &written, false)?;
        }
        bar.set_position(self.byte);
        Ok(())
    }
}

/// Writes `rows` in `tx` (`None` when there are none) and commits it once `after` says the
/// batch before has committed; rolls back if that batch failed. Returns `None` for no rows.
async fn write_after(
    tx: Option<TenantTx>,
    rows: Vec<Pending>,
    file_name: String,
    after: Option<oneshot::Receiver<()>>,
    done: oneshot::Sender<()>,
) -> Result<Option<Written>> {
    let mut open = None;
    let written = match tx {
        Some(mut tx) => {
            let written = write_batch(&mut tx, rows, &file_name, false).await?;
            open = Some(tx);
            Some(written)
        }
        None => None,
    };
    if let Some(after) = after {
        // Returning here drops the transaction, which rolls it back.
        after
            .await
            .map_err(|_| anyhow!("not committed: an earlier batch failed"))?;
    }
    if let Some(tx) = open {
        tx.commit().await?;
    }
    // Nobody listens only when no batch follows.
    let _ = done.send(());
    Ok(written)
}

/// What writing one batch did.
#[derive(Debug, Default)]
struct Written {
    /// Lines whose email the workspace already had (not written).
    taken: Vec<u64>,
    /// Contacts created.
    created: u64,
}

/// Adds a written batch to the summary, reporting its rows whose email was taken.
fn tally(summary: &mut Summary, written: &Written, strict: bool) -> Result<()> {
    for line in &written.taken {
        reject(
            summary,
            strict,
            *line,
            "email: a contact with this email already exists in the workspace",
        )?;
    }
    summary.imported += written.created;
    summary.batches += 1;
    Ok(())
}

/// Drops rows whose email the workspace already has, inserts the rest and appends the batch's
/// audit event, all in `tx`. With `strict`, a taken email stops it before anything is written.
async fn write_batch(
    tx: &mut TenantTx,
    rows: Vec<Pending>,
    file_name: &str,
    strict: bool,
) -> Result<Written> {
    let (first, last) = (
        rows.first().map_or(0, |p| p.line),
        rows.last().map_or(0, |p| p.line),
    );
    let emails: Vec<String> = rows.iter().map(|p| p.email.clone()).collect();
    let taken = contacts::existing_emails(tx, &emails).await?;
    let mut written = Written::default();
    let mut keep = Vec::with_capacity(rows.len());
    for p in rows {
        if taken.contains(&p.email) {
            written.taken.push(p.line);
        } else {
            keep.push(p.contact);
        }
    }
    if keep.is_empty() || (strict && !written.taken.is_empty()) {
        return Ok(written);
    }
    let now = SystemClock.now();
    let created = contacts::create_many(tx, keep).await?;
    written.created = created.len() as u64;
    let event = NewEvent {
        workspace: Some(tx.workspace()),
        actor: rampart_core::Actor::Operator.into(),
        auth_method: Some(AuthMethod::Cli),
        method: "CLI".to_owned(),
        path: "rampart import contacts".to_owned(),
        action: "contact.import".to_owned(),
        args: redact_args(
            json!({"file": file_name, "lines": [first, last], "created": written.created})
                .to_string()
                .as_bytes(),
        ),
        status: 200,
        request_id: format!("cli_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
        ..NewEvent::default()
    };
    audit::append(tx, event, now).await?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn row(fields: &[&str]) -> csv::StringRecord {
        csv::StringRecord::from(fields.to_vec())
    }

    #[test]
    fn rows_are_validated_with_the_api_types() {
        let cols =
            Columns::from_header(&row(&["name", "email", "phone", "us_state", "tags"])).unwrap();
        let (c, email) = parse_row(
            &cols,
            &row(&["Ada", "Ada@Example.com", "+14155552671", "CA", "a; b;"]),
        )
        .unwrap();
        assert_eq!(email, "ada@example.com");
        assert_eq!(c.tags.len(), 2);
        assert!(
            parse_row(&cols, &row(&["Ada", "nope", "", "", ""]))
                .unwrap_err()
                .starts_with("email:")
        );
        assert!(
            parse_row(&cols, &row(&["Ada", "a@example.com", "", "ZZ", ""]))
                .unwrap_err()
                .starts_with("us_state:")
        );
        assert!(Columns::from_header(&row(&["name", "mail"])).is_err());
        // The API's limit of 50 tags holds here too (the import once took any number).
        let many = (0..51)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(";");
        assert_eq!(
            parse_row(&cols, &row(&["Ada", "a@example.com", "", "", &many])).unwrap_err(),
            "tags: at most 50 tags"
        );
        assert!(
            parse_row(&cols, &row(&["", "", "", "", ""]))
                .unwrap_err()
                .starts_with("email:")
        );
    }
}
