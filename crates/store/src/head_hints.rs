//! SQLite's memory of each organization's audit chain head, as this process's writer last
//! moved it.
//!
//! An audited write on SQLite used to read its organization's head in one round trip to the
//! driver's thread and insert the event it linked to it in another, both while holding the one
//! writer that every write of the server waits for. With a hint the event is linked to the head
//! the writer expects and inserted in the same command as the statement before it. A hint is
//! only ever a guess: the database refuses an event that does not follow the actual head
//! (migration 7's trigger), and the append then reads the head and links again. So a hint left
//! stale by a rollback, by another process writing the same file (the CLI), or by a restore
//! costs one refused insert, never a wrong link.

use std::collections::HashMap;
use std::sync::Mutex;

use rampart_core::OrgId;

/// Most organizations remembered at once; past it the memory starts over (a miss costs a
/// round trip, so a bound beats an eviction policy here).
const CAPACITY: usize = 4096;

/// A chain head: its last sequence number and that event's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) seq: i64,
    pub(crate) hash: [u8; 32],
}

/// The heads this process's writer last moved, by organization.
#[derive(Debug, Default)]
pub(crate) struct HeadHints(Mutex<HashMap<OrgId, Head>>);

impl HeadHints {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, Head>> {
        // A panic elsewhere while holding the lock leaves a map of guesses, still safe to use.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The head `org`'s chain is expected to have, if this process has moved it.
    pub(crate) fn get(&self, org: OrgId) -> Option<Head> {
        self.map().get(&org).copied()
    }

    /// Records that `org`'s head is now `head` (in the writer's open transaction).
    pub(crate) fn set(&self, org: OrgId, head: Head) {
        let mut map = self.map();
        if map.len() >= CAPACITY && !map.contains_key(&org) {
            map.clear();
        }
        map.insert(org, head);
    }

    /// Drops what was expected of `org`'s head, once the database has refused it.
    pub(crate) fn forget(&self, org: OrgId) {
        self.map().remove(&org);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: i64, byte: u8) -> Head {
        Head {
            seq,
            hash: [byte; 32],
        }
    }

    #[test]
    fn the_memory_is_bounded_and_keeps_the_latest_head() {
        let hints = HeadHints::default();
        let first = OrgId::generate();
        hints.set(first, head(1, 1));
        hints.set(first, head(2, 2));
        assert_eq!(hints.get(first), Some(head(2, 2)));
        for _ in 0..CAPACITY {
            hints.set(OrgId::generate(), head(1, 0));
        }
        assert!(hints.map().len() <= CAPACITY);
        assert_eq!(hints.get(first), None, "started over once full");
        let last = OrgId::generate();
        hints.set(last, head(9, 9));
        hints.forget(last);
        assert_eq!(hints.get(last), None);
    }
}
