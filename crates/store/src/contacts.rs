//! Contacts: a tenant table, with tags in `contact_tags` (a composite foreign key keeps a tag
//! row in its contact's workspace). Every statement names the transaction's workspace.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rampart_core::{ContactId, Email, PersonName, Phone, Tag, UsState, WorkspaceId};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, Row};

use crate::conn::{Conn, execute, fetch_all, fetch_optional, id};
use crate::versions::{self, VersionEvent};
use crate::{StoreError, TenantTx, db_time};

/// The `object_type` contacts carry in version history.
pub const OBJECT_TYPE: &str = "contact";
const EMAIL_TAKEN: &str = "a contact with this email already exists in the workspace";

/// A stored contact, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    /// The id.
    pub id: ContactId,
    /// The workspace it belongs to.
    pub workspace_id: WorkspaceId,
    /// Display name.
    pub name: Option<String>,
    /// Email address as given.
    pub email: Option<String>,
    /// Phone number, E.164.
    pub phone: Option<String>,
    /// USPS state code.
    pub us_state: Option<String>,
    /// Tags, sorted.
    pub tags: Vec<String>,
    /// Free-form fields (a JSON object).
    pub custom_fields: Value,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// A validated new contact.
#[derive(Debug, Clone, Default)]
pub struct NewContact {
    /// Display name.
    pub name: Option<PersonName>,
    /// Email.
    pub email: Option<Email>,
    /// Phone.
    pub phone: Option<Phone>,
    /// State.
    pub us_state: Option<UsState>,
    /// Tags (duplicates are merged).
    pub tags: Vec<Tag>,
    /// Custom fields.
    pub custom_fields: Map<String, Value>,
}

impl NewContact {
    /// A contact from fields checked by [`rampart_core::ContactText::validate`].
    pub fn from_fields(f: rampart_core::ContactFields, custom_fields: Map<String, Value>) -> Self {
        Self {
            name: f.name,
            email: f.email,
            phone: f.phone,
            us_state: f.us_state,
            tags: f.tags,
            custom_fields,
        }
    }
}

/// A validated change: `None` leaves a field alone, `Some(None)` clears it. Custom fields
/// merge key by key; a `null` value removes that key.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    /// New name.
    pub name: Option<Option<PersonName>>,
    /// New email.
    pub email: Option<Option<Email>>,
    /// New phone.
    pub phone: Option<Option<Phone>>,
    /// New state.
    pub us_state: Option<Option<UsState>>,
    /// Replacement tag set.
    pub tags: Option<Vec<Tag>>,
    /// Keys to set or (with `null`) remove.
    pub custom_fields: Option<Map<String, Value>>,
}

/// Which contacts a list returns.
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    /// Only this email (compared case-insensitively).
    pub email: Option<Email>,
    /// Only contacts carrying this tag.
    pub tag: Option<Tag>,
    /// Only contacts changed at or after this time.
    pub updated_since: Option<DateTime<Utc>>,
    /// Only contacts after this id (the cursor).
    pub after: Option<ContactId>,
}

struct Row0 {
    id: ContactId,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    us_state: Option<String>,
    custom_fields: Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

macro_rules! row0 {
    ($r:expr) => {{
        let r = $r;
        let e = StoreError::from_sqlx;
        Ok(Row0 {
            id: id(r.try_get::<String, _>("id").map_err(e)?)?,
            name: r.try_get("name").map_err(e)?,
            email: r.try_get("email").map_err(e)?,
            phone: r.try_get("phone").map_err(e)?,
            us_state: r.try_get("us_state").map_err(e)?,
            custom_fields: r.try_get::<Json<Value>, _>("custom_fields").map_err(e)?.0,
            created_at: r.try_get("created_at").map_err(e)?,
            updated_at: r.try_get("updated_at").map_err(e)?,
        })
    }};
}

/// The columns [`Row0`] reads, as a macro so that `concat!` can build each query's text once,
/// at compile time, instead of formatting it on every call.
macro_rules! columns {
    () => {
        "id, name, email, phone, us_state, custom_fields, created_at, updated_at"
    };
}
/// [`columns`] of the contact aliased `c`, for statements that join another table.
macro_rules! qualified_columns {
    () => {
        "c.id, c.name, c.email, c.phone, c.us_state, c.custom_fields, c.created_at, c.updated_at"
    };
}

impl Row0 {
    fn into_contact(self, workspace_id: WorkspaceId, tags: Vec<String>) -> Contact {
        Contact {
            id: self.id,
            workspace_id,
            name: self.name,
            email: self.email,
            phone: self.phone,
            us_state: self.us_state,
            tags,
            custom_fields: self.custom_fields,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

fn dedup(tags: &[Tag]) -> Vec<String> {
    let mut v: Vec<String> = tags.iter().map(|t| t.as_str().to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

/// Replaces a contact's tags with `tags`.
async fn write_tags(
    tx: &mut TenantTx,
    contact: ContactId,
    tags: &[String],
) -> Result<(), StoreError> {
    let ws = tx.ws();
    execute!(
        &mut tx.conn,
        "DELETE FROM contact_tags WHERE workspace_id = $1 AND contact_id = $2",
        ws,
        contact.to_string()
    )
    .map_err(StoreError::from_sqlx)?;
    add_tags(tx, contact, tags).await
}

/// Adds `tags` to a contact that has none of them (a contact created in this transaction has
/// no tags to clear, which saves a statement on every create).
async fn add_tags(
    tx: &mut TenantTx,
    contact: ContactId,
    tags: &[String],
) -> Result<(), StoreError> {
    let id = contact.to_string();
    let rows: Vec<(&str, &str)> = tags.iter().map(|t| (id.as_str(), t.as_str())).collect();
    insert_tags(tx, &rows).await
}

/// Inserts `(contact id, tag)` rows of the transaction's workspace in one statement: each
/// statement is a round trip while the writer is held (docs/architecture.md, "Write cost is
/// counted in statements").
async fn insert_tags(tx: &mut TenantTx, rows: &[(&str, &str)]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let ws = tx.ws();
    let sql = |numbered| {
        multi_row(
            "INSERT INTO contact_tags (workspace_id, contact_id, tag) VALUES ",
            rows.len(),
            3,
            numbered,
        )
    };
    macro_rules! run {
        ($c:expr, $numbered:expr) => {{
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql($numbered)));
            for (id, tag) in rows {
                q = q.bind(ws.as_str()).bind(*id).bind(*tag);
            }
            q.execute(&mut **$c).await.map_err(StoreError::from_sqlx)?;
        }};
    }
    match &mut tx.conn {
        crate::conn::Conn::Sqlite(c) => run!(c, false),
        crate::conn::Conn::Pg(c) => run!(c, true),
    }
    Ok(())
}

async fn tags_of(tx: &mut TenantTx, contact: ContactId) -> Result<Vec<String>, StoreError> {
    let ws = tx.ws();
    fetch_all!(
        &mut tx.conn,
        "SELECT tag FROM contact_tags WHERE workspace_id = $1 AND contact_id = $2 ORDER BY tag",
        [ws, contact.to_string()],
        |r| r.try_get::<String, _>("tag").map_err(StoreError::from_sqlx)
    )
}

/// Creates a contact in the transaction's workspace.
pub async fn create(
    tx: &mut TenantTx,
    new: NewContact,
    now: DateTime<Utc>,
) -> Result<Contact, StoreError> {
    let contact = ContactId::generate();
    let now = db_time(now);
    let created = Contact {
        id: contact,
        workspace_id: tx.workspace(),
        name: new.name.map(|n| n.as_str().to_owned()),
        email: new.email.as_ref().map(|e| e.as_str().to_owned()),
        phone: new.phone.map(|p| p.as_str().to_owned()),
        us_state: new.us_state.map(|s| s.as_str().to_owned()),
        tags: dedup(&new.tags),
        custom_fields: Value::Object(new.custom_fields),
        created_at: now,
        updated_at: now,
    };
    let email_lower = new.email.as_ref().map(Email::normalized);
    let actor = tx.actor_label();
    // The first version's `after`: the contact as created.
    let after = serde_json::to_value(&created)
        .map_err(|_| crate::error::corrupt("contact json"))?
        .to_string();
    // The contact's ten columns and its first version, `$1`–`$14` of `insert_contact!` and
    // `insert_first_version!`, in either backend's query.
    macro_rules! contact {
        ($sql:expr) => {
            sqlx::query($sql)
                .bind(contact.to_string())
                .bind(created.workspace_id.to_string())
                .bind(created.name.as_deref())
                .bind(created.email.as_deref())
                .bind(email_lower.as_deref())
                .bind(created.phone.as_deref())
                .bind(created.us_state.as_deref())
                .bind(Json(&created.custom_fields))
                .bind(now)
                .bind(now)
                .bind(OBJECT_TYPE)
                .bind(VersionEvent::Create.as_str())
                .bind(actor)
                .bind(after)
        };
    }
    let taken = |e| StoreError::classify(e, EMAIL_TAKEN);
    match &mut tx.conn {
        crate::conn::Conn::Sqlite(c) => {
            // SQLite runs several statements as one command, so the contact, its tags and its
            // first version cost one hand-off to sqlx's worker thread while the writer is held,
            // not three (docs/architecture.md, "Write cost is counted in statements").
            let mut q = contact!(sqlx::AssertSqlSafe(sqlite_create_sql(created.tags.len())));
            for tag in &created.tags {
                q = q.bind(tag.as_str());
            }
            q.execute(&mut **c).await.map_err(taken)?;
        }
        // PostgreSQL cannot prepare several statements as one, but one statement may hold
        // several inserts as data-modifying CTEs: one round trip instead of three.
        crate::conn::Conn::Pg(c) => {
            contact!(PG_CREATE)
                .bind(&created.tags)
                .execute(&mut **c)
                .await
                .map_err(taken)?;
        }
    }
    Ok(created)
}

/// A contact's row, its columns as `$1`–`$10`.
macro_rules! insert_contact {
    () => {
        "INSERT INTO contacts (id, workspace_id, name, email, email_lower, phone, us_state, custom_fields, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    };
}

/// A new contact's first version: `$11` object type, `$12` event, `$13` actor, `$14` the
/// contact as JSON (a new id has no earlier version, so it is number 1).
macro_rules! insert_first_version {
    () => {
        "INSERT INTO object_versions (workspace_id, object_type, object_id, version, event, actor, at, before, after) \
         VALUES ($2, $11, $1, 1, $12, $13, $9, NULL, $14)"
    };
}

/// PostgreSQL's create as one statement of data-modifying CTEs: `$1`–`$14` as above, `$15` the
/// tags as one array. The foreign-key checks of the tag rows run at the end of the statement,
/// when the contact's row is there to be found.
const PG_CREATE: &str = concat!(
    "WITH contact AS (",
    insert_contact!(),
    "), version AS (",
    insert_first_version!(),
    ") INSERT INTO contact_tags (workspace_id, contact_id, tag) SELECT $2, $1, tag FROM unnest($15::text[]) AS tag"
);

/// SQLite's create as one command of numbered parameters: `$1`–`$14` as above, `$15` on one
/// tag each.
fn sqlite_create_sql(tags: usize) -> String {
    let mut sql = concat!(insert_contact!(), "; ", insert_first_version!()).to_owned();
    if tags > 0 {
        sql.push_str("; INSERT INTO contact_tags (workspace_id, contact_id, tag) VALUES ");
        for i in 0..tags {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("($2, $1, ${})", 15 + i));
        }
    }
    sql
}

async fn version(
    tx: &mut TenantTx,
    contact: &ContactId,
    event: VersionEvent,
    before: Option<&Contact>,
    after: Option<&Contact>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let json =
        |c: &Contact| serde_json::to_value(c).map_err(|_| crate::error::corrupt("contact json"));
    let before = before.map(json).transpose()?;
    let after = after.map(json).transpose()?;
    versions::record(
        tx,
        OBJECT_TYPE,
        &contact.to_string(),
        event,
        before.as_ref(),
        after.as_ref(),
        now,
    )
    .await
}

/// One contact of this workspace.
pub async fn get(tx: &mut TenantTx, contact: ContactId) -> Result<Option<Contact>, StoreError> {
    let ws = tx.ws();
    let row: Option<Row0> = fetch_optional!(
        &mut tx.conn,
        concat!(
            "SELECT ",
            columns!(),
            " FROM contacts WHERE workspace_id = $1 AND id = $2"
        ),
        [ws, contact.to_string()],
        |r| row0!(r)
    )?;
    let Some(row) = row else { return Ok(None) };
    let tags = tags_of(tx, contact).await?;
    Ok(Some(row.into_contact(tx.workspace(), tags)))
}

/// Applies a change; `None` when this workspace has no such contact.
pub async fn update(
    tx: &mut TenantTx,
    contact: ContactId,
    patch: ContactPatch,
    now: DateTime<Utc>,
) -> Result<Option<Contact>, StoreError> {
    let Some(mut current) = get(tx, contact).await? else {
        return Ok(None);
    };
    let before = current.clone();
    let ws = tx.ws();
    if let Some(name) = patch.name {
        current.name = name.map(|n| n.as_str().to_owned());
    }
    let mut email_lower = current.email.as_ref().map(|e| e.to_lowercase());
    if let Some(email) = patch.email {
        email_lower = email.as_ref().map(Email::normalized);
        current.email = email.map(|e| e.as_str().to_owned());
    }
    if let Some(phone) = patch.phone {
        current.phone = phone.map(|p| p.as_str().to_owned());
    }
    if let Some(state) = patch.us_state {
        current.us_state = state.map(|s| s.as_str().to_owned());
    }
    if let Some(changes) = patch.custom_fields {
        let mut merged: BTreeMap<String, Value> = match std::mem::take(&mut current.custom_fields) {
            Value::Object(m) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        for (k, v) in changes {
            if v.is_null() {
                merged.remove(&k);
            } else {
                merged.insert(k, v);
            }
        }
        current.custom_fields = Value::Object(merged.into_iter().collect());
    }
    current.updated_at = db_time(now);
    execute!(&mut tx.conn,
        "UPDATE contacts SET name = $1, email = $2, email_lower = $3, phone = $4, us_state = $5, custom_fields = $6, updated_at = $7 \
         WHERE workspace_id = $8 AND id = $9",
        current.name.clone(), current.email.clone(), email_lower, current.phone.clone(), current.us_state.clone(),
        Json(&current.custom_fields), current.updated_at, ws, contact.to_string())
    .map_err(|e| StoreError::classify(e, EMAIL_TAKEN))?;
    if let Some(tags) = patch.tags {
        current.tags = dedup(&tags);
        write_tags(tx, contact, &current.tags).await?;
    }
    version(
        tx,
        &contact,
        VersionEvent::Update,
        Some(&before),
        Some(&current),
        now,
    )
    .await?;
    Ok(Some(current))
}

/// Deletes a contact (its tags go with it); `false` when this workspace has no such contact.
pub async fn delete(
    tx: &mut TenantTx,
    contact: ContactId,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let Some(before) = get(tx, contact).await? else {
        return Ok(false);
    };
    let ws = tx.ws();
    let n = execute!(
        &mut tx.conn,
        "DELETE FROM contacts WHERE workspace_id = $1 AND id = $2",
        ws,
        contact.to_string()
    )
    .map_err(StoreError::from_sqlx)?;
    if n == 1 {
        version(tx, &contact, VersionEvent::Delete, Some(&before), None, now).await?;
    }
    Ok(n == 1)
}

/// The statement of a page of contacts under `filter`: `$1` the workspace, `$2` the cursor
/// (`''` for none), then one placeholder for each filter present, in the order email,
/// `updated_since`, tag, and last the number of rows to fetch.
///
/// Each filter adds its own predicate only when present, so that each can use its index: an
/// email is a seek in `UNIQUE (workspace_id, email_lower)`, whatever the workspace's size; a
/// tag walks `contact_tags_by_tag` in id order and fetches each contact by key. A predicate
/// written for an absent filter too (`$3 IS NULL OR c.email_lower = $3`) kept both planners on
/// the id index, reading the workspace row by row (14 ms at 80k contacts against 1 ms).
pub fn list_sql(filter: &ContactFilter) -> String {
    let mut sql = String::from(concat!("SELECT ", qualified_columns!(), " FROM "));
    let mut n = 2;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if filter.tag.is_some() {
        sql.push_str(
            "contact_tags t JOIN contacts c ON c.workspace_id = t.workspace_id AND c.id = t.contact_id \
             WHERE t.workspace_id = $1 AND t.contact_id > $2",
        );
    } else {
        sql.push_str("contacts c WHERE c.workspace_id = $1 AND c.id > $2");
    }
    if filter.email.is_some() {
        sql.push_str(&format!(" AND c.email_lower = {}", next()));
    }
    if filter.updated_since.is_some() {
        sql.push_str(&format!(" AND c.updated_at >= {}", next()));
    }
    if filter.tag.is_some() {
        // Ordered as the tag index is, so the walk needs no sort.
        sql.push_str(&format!(" AND t.tag = {} ORDER BY t.contact_id", next()));
    } else {
        sql.push_str(" ORDER BY c.id");
    }
    sql.push_str(&format!(" LIMIT {}", next()));
    sql
}

/// Binds [`list_sql`]'s arguments, in its order, to a query on either backend.
macro_rules! bind_list {
    ($query:expr, $ws:expr, $filter:expr, $fetch:expr) => {{
        let f: &ContactFilter = $filter;
        // A plain `id > $2` lets both databases seek the (workspace_id, id) index to the
        // cursor; with no cursor, '' sorts before every id.
        let mut q = $query
            .bind($ws)
            .bind(f.after.map(|a| a.to_string()).unwrap_or_default());
        if let Some(email) = &f.email {
            q = q.bind(email.normalized());
        }
        if let Some(t) = f.updated_since {
            q = q.bind(db_time(t));
        }
        if let Some(tag) = &f.tag {
            q = q.bind(tag.as_str().to_owned());
        }
        q.bind($fetch)
    }};
}

/// A page of contacts in id order, and the id to continue after when there are more.
pub async fn list(
    tx: &mut TenantTx,
    filter: &ContactFilter,
    limit: u32,
) -> Result<(Vec<Contact>, Option<ContactId>), StoreError> {
    let ws = tx.ws();
    let fetch = i64::from(limit) + 1;
    let sql = list_sql(filter);
    let rows: Vec<Row0> = match &mut tx.conn {
        Conn::Sqlite(c) => bind_list!(sqlx::query(AssertSqlSafe(sql)), ws.clone(), filter, fetch)
            .fetch_all(&mut **c)
            .await
            .map_err(StoreError::from_sqlx)?
            .iter()
            .map(|r| row0!(r))
            .collect::<Result<_, StoreError>>()?,
        Conn::Pg(c) => bind_list!(sqlx::query(AssertSqlSafe(sql)), ws.clone(), filter, fetch)
            .fetch_all(&mut **c)
            .await
            .map_err(StoreError::from_sqlx)?
            .iter()
            .map(|r| row0!(r))
            .collect::<Result<_, StoreError>>()?,
    };
    let mut rows = rows;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id)
    } else {
        None
    };
    let (Some(first), Some(last)) = (rows.first().map(|r| r.id), rows.last().map(|r| r.id)) else {
        return Ok((Vec::new(), None));
    };
    let pairs: Vec<(String, String)> = fetch_all!(
        &mut tx.conn,
        "SELECT contact_id, tag FROM contact_tags WHERE workspace_id = $1 AND contact_id >= $2 AND contact_id <= $3 ORDER BY contact_id, tag",
        [ws, first.to_string(), last.to_string()],
        |r| Ok((
            r.try_get::<String, _>("contact_id")
                .map_err(StoreError::from_sqlx)?,
            r.try_get::<String, _>("tag")
                .map_err(StoreError::from_sqlx)?
        ))
    )?;
    let mut by_contact: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (c, t) in pairs {
        by_contact.entry(c).or_default().push(t);
    }
    let workspace = tx.workspace();
    let contacts = rows
        .into_iter()
        .map(|r| {
            let tags = by_contact.remove(&r.id.to_string()).unwrap_or_default();
            r.into_contact(workspace, tags)
        })
        .collect();
    Ok((contacts, next))
}

/// Inserts a tag row naming `contact` but carrying `tag_workspace`: exists only so tests can
/// show that the database itself refuses a cross-workspace reference (feature `test-seams`,
/// which only the server's test build enables).
#[cfg(feature = "test-seams")]
#[doc(hidden)]
pub async fn insert_raw_tag_for_test(
    tx: &mut TenantTx,
    tag_workspace: WorkspaceId,
    contact: ContactId,
) -> Result<(), StoreError> {
    execute!(
        &mut tx.conn,
        "INSERT INTO contact_tags (workspace_id, contact_id, tag) VALUES ($1, $2, 'forged')",
        tag_workspace.to_string(),
        contact.to_string()
    )
    .map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// Rows per multi-row `INSERT` in [`create_many`]: 10 parameters each, well inside both
/// backends' limits (SQLite 32,766, PostgreSQL 65,535).
const ROWS_PER_INSERT: usize = 500;

/// Which of these normalized emails (see [`Email::normalized`]) already belong to a contact
/// of the transaction's workspace.
pub async fn existing_emails(
    tx: &mut TenantTx,
    normalized: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let ws = tx.ws();
    let mut found = std::collections::HashSet::new();
    match &mut tx.conn {
        crate::conn::Conn::Pg(c) => {
            // One statement for the whole list, sent unnamed: PostgreSQL plans an unnamed
            // statement with its actual parameters each time. A prepared one switches, after
            // five runs, to the generic plan it costed while the table was still small (a
            // sequential scan) and keeps it for the rest of a bulk load: 1,000 rows/s in
            // `bench/` scenario 6. (Forcing custom plans for the whole transaction instead
            // re-planned every foreign-key check of the inserts too: half the server's CPU.)
            let rows = sqlx::query(
                "SELECT email_lower FROM contacts WHERE workspace_id = $1 AND email_lower = ANY($2)",
            )
            .bind(ws)
            .bind(normalized)
            .persistent(false)
            .fetch_all(&mut **c)
            .await
            .map_err(StoreError::from_sqlx)?;
            for r in &rows {
                found.insert(r.try_get::<String, _>(0).map_err(StoreError::from_sqlx)?);
            }
        }
        crate::conn::Conn::Sqlite(c) => {
            for chunk in normalized.chunks(ROWS_PER_INSERT) {
                let sql = format!(
                    "SELECT email_lower FROM contacts WHERE workspace_id = ? AND email_lower IN ({})",
                    vec!["?"; chunk.len()].join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(ws.clone());
                for e in chunk {
                    q = q.bind(e.as_str());
                }
                for r in &q.fetch_all(&mut **c).await.map_err(StoreError::from_sqlx)? {
                    found.insert(r.try_get::<String, _>(0).map_err(StoreError::from_sqlx)?);
                }
            }
        }
    }
    Ok(found)
}

/// A contact made ready for [`create_many`] outside any transaction: its id, stored form and
/// version-1 history entry already rendered, so that the import can do this work on its reading
/// thread while the database writes the batch before (the writer then only binds).
#[derive(Debug)]
pub struct PreparedContact {
    contact: Contact,
    id: String,
    email_lower: Option<String>,
    after: String,
}

impl PreparedContact {
    /// Gives `new` an id in `workspace`, created at `now`, and renders its history entry.
    pub fn new(
        workspace: WorkspaceId,
        new: NewContact,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let now = db_time(now);
        let contact = Contact {
            id: ContactId::generate(),
            workspace_id: workspace,
            name: new.name.map(|n| n.as_str().to_owned()),
            email: new.email.as_ref().map(|e| e.as_str().to_owned()),
            phone: new.phone.map(|p| p.as_str().to_owned()),
            us_state: new.us_state.map(|s| s.as_str().to_owned()),
            tags: dedup(&new.tags),
            custom_fields: Value::Object(new.custom_fields),
            created_at: now,
            updated_at: now,
        };
        let after =
            serde_json::to_string(&contact).map_err(|_| crate::error::corrupt("contact json"))?;
        Ok(Self {
            id: contact.id.to_string(),
            email_lower: new.email.as_ref().map(Email::normalized),
            contact,
            after,
        })
    }
}

/// Creates many contacts in the transaction's workspace with multi-row `INSERT`s: the bulk
/// path of `rampart import contacts`. Each contact gets its tags and a version-1 `create`
/// entry in version history, exactly as [`create`] writes them; the caller records the audit
/// event (one per batch) and must leave out emails that already exist (see
/// [`existing_emails`]) or repeat within `rows`: a conflict fails the whole statement. A row
/// prepared for another workspace is refused before anything is written.
pub async fn create_many(
    tx: &mut TenantTx,
    rows: Vec<PreparedContact>,
) -> Result<Vec<ContactId>, StoreError> {
    let workspace = tx.workspace();
    if rows.iter().any(|r| r.contact.workspace_id != workspace) {
        return Err(crate::error::corrupt(
            "a contact prepared for another workspace",
        ));
    }
    let ws = tx.ws();
    let actor = tx.actor_label();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = |numbered| {
            multi_row(
                "INSERT INTO contacts (id, workspace_id, name, email, email_lower, phone, us_state, custom_fields, created_at, updated_at) VALUES ",
                chunk.len(),
                10,
                numbered,
            )
        };
        macro_rules! run {
            ($c:expr, $numbered:expr) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql($numbered)));
                for r in chunk {
                    let c = &r.contact;
                    q = q
                        .bind(r.id.as_str())
                        .bind(ws.as_str())
                        .bind(c.name.as_deref())
                        .bind(c.email.as_deref())
                        .bind(r.email_lower.as_deref())
                        .bind(c.phone.as_deref())
                        .bind(c.us_state.as_deref())
                        .bind(Json(&c.custom_fields))
                        .bind(c.created_at)
                        .bind(c.updated_at);
                }
                q.execute(&mut **$c)
                    .await
                    .map_err(|e| StoreError::classify(e, EMAIL_TAKEN))?;
            }};
        }
        match &mut tx.conn {
            crate::conn::Conn::Sqlite(c) => run!(c, false),
            crate::conn::Conn::Pg(c) => run!(c, true),
        }
        let tags: Vec<(&str, &str)> = chunk
            .iter()
            .flat_map(|r| {
                r.contact
                    .tags
                    .iter()
                    .map(move |t| (r.id.as_str(), t.as_str()))
            })
            .collect();
        for part in tags.chunks(ROWS_PER_INSERT * 2) {
            insert_tags(tx, part).await?;
        }
        let sql = |numbered| {
            multi_row(
                "INSERT INTO object_versions (workspace_id, object_type, object_id, version, event, actor, at, before, after) VALUES ",
                chunk.len(),
                9,
                numbered,
            )
        };
        macro_rules! run {
            ($c:expr, $numbered:expr) => {{
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql($numbered)));
                for r in chunk {
                    q = q
                        .bind(ws.as_str())
                        .bind(OBJECT_TYPE)
                        .bind(r.id.as_str())
                        .bind(1_i64)
                        .bind("create")
                        .bind(actor.as_str())
                        .bind(r.contact.created_at)
                        .bind(None::<&str>)
                        .bind(Some(r.after.as_str()));
                }
                q.execute(&mut **$c).await.map_err(StoreError::from_sqlx)?;
            }};
        }
        match &mut tx.conn {
            crate::conn::Conn::Sqlite(c) => run!(c, false),
            crate::conn::Conn::Pg(c) => run!(c, true),
        }
    }
    Ok(rows.into_iter().map(|r| r.contact.id).collect())
}

/// Placeholder `n` (1-based): `$n` for PostgreSQL; a plain `?` for SQLite, which binds them in
/// order. SQLite keeps `$n` (and `?n`) names in a list it scans linearly on every lookup, and
/// sqlx looks each parameter's name up when binding, so a statement with thousands of numbered
/// placeholders costs time quadratic in their number (two thirds of an import's CPU, measured
/// with perf); anonymous ones are not in that list.
fn placeholder(numbered: bool, n: usize) -> String {
    if numbered {
        format!("${n}")
    } else {
        "?".to_owned()
    }
}

/// `prefix` followed by `rows` groups of `cols` placeholders (see [`placeholder`]):
/// `($1, $2), ($3, $4)` or `(?, ?), (?, ?)`.
fn multi_row(prefix: &str, rows: usize, cols: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * cols * 6);
    sql.push_str(prefix);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&placeholder(numbered, r * cols + c + 1));
        }
        sql.push(')');
    }
    sql
}
