//! Version history of domain objects: who changed what, when, with the object before and
//! after. Written in the same transaction as the change. Every domain object uses it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use crate::conn::{execute, fetch_all};
use crate::{StoreError, TenantTx, db_time};

/// What happened to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionEvent {
    /// It was created.
    Create,
    /// It was changed.
    Update,
    /// It was deleted.
    Delete,
}

impl VersionEvent {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            VersionEvent::Create => "create",
            VersionEvent::Update => "update",
            VersionEvent::Delete => "delete",
        }
    }
}

/// One version of an object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Version {
    /// 1, 2, … per object.
    pub version: i64,
    /// What happened.
    pub event: String,
    /// Who did it.
    pub actor: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The object before (none for a create).
    pub before: Option<Value>,
    /// The object after (none for a delete).
    pub after: Option<Value>,
}

/// Records a version of `object_type`/`object_id` in the transaction's workspace.
pub async fn record(
    tx: &mut TenantTx,
    object_type: &str,
    object_id: &str,
    event: VersionEvent,
    before: Option<&Value>,
    after: Option<&Value>,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let ws = tx.ws();
    let actor = tx.actor_label();
    // The next number and the row in one statement: one round trip fewer on every change.
    execute!(&mut tx.conn,
        "INSERT INTO object_versions (workspace_id, object_type, object_id, version, event, actor, at, before, after) \
         SELECT $1, $2, $3, COALESCE(MAX(version), 0) + 1, $4, $5, $6, $7, $8 FROM object_versions \
         WHERE workspace_id = $1 AND object_type = $2 AND object_id = $3",
        ws, object_type, object_id, event.as_str(), actor, db_time(at),
        before.map(Value::to_string), after.map(Value::to_string))
    .map_err(StoreError::from_sqlx)?;
    Ok(())
}

/// Every version of an object in this workspace, oldest first.
pub async fn list(
    tx: &mut TenantTx,
    object_type: &str,
    object_id: &str,
) -> Result<Vec<Version>, StoreError> {
    let ws = tx.ws();
    fetch_all!(
        &mut tx.conn,
        "SELECT version, event, actor, at, before, after FROM object_versions \
         WHERE workspace_id = $1 AND object_type = $2 AND object_id = $3 ORDER BY version",
        [ws, object_type, object_id],
        |r| {
            let e = StoreError::from_sqlx;
            let parse = |t: Option<String>| {
                t.map(|t| {
                    serde_json::from_str(&t).map_err(|_| crate::error::corrupt("bad version json"))
                })
                .transpose()
            };
            Ok(Version {
                version: r.try_get("version").map_err(e)?,
                event: r.try_get("event").map_err(e)?,
                actor: r.try_get("actor").map_err(e)?,
                at: r.try_get("at").map_err(e)?,
                before: parse(r.try_get("before").map_err(e)?)?,
                after: parse(r.try_get("after").map_err(e)?)?,
            })
        }
    )
}
