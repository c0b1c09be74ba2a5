//! CSV import rows (`rampart import contacts`): any bytes give a refused header or, row by
//! row, a contact or a reason, never a panic; an accepted row's email is normalized once and
//! for all (it reads back as itself).

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rampart::cli::import_contacts::validate_csv;
use rampart_core::{Email, WorkspaceId};

static WORKSPACE: LazyLock<WorkspaceId> = LazyLock::new(WorkspaceId::generate);

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = validate_csv(data, *WORKSPACE) {
        for email in rows.iter().flatten() {
            let again = Email::parse(email).map(|e| e.normalized());
            assert_eq!(again.as_deref().ok(), Some(email.as_str()));
        }
    }
});
