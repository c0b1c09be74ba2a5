//! File descriptors: the soft open-file limit is raised to the hard one at start, and the
//! connection cap is derived from it, keeping a reserve for everything else the process opens
//! (database files or sockets, the keyring, the log, Redis, mail), so that connections are shed
//! before `accept` or the database fails for want of a descriptor.

/// No more connections than this by default, however high the open-file limit: each idle
/// connection also costs memory (buffers and a task, some tens of KiB).
pub const CEILING: u64 = 65_536;

/// The open-file limit before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit found at start (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now.
    pub now: Option<u64>,
}

/// Raises the soft open-file limit to the hard limit (Linux); elsewhere reports nothing.
pub fn raise_open_file_limit() -> Option<OpenFiles> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        // An unlimited hard limit cannot be the soft limit of RLIMIT_NOFILE; Linux's own
        // ceiling (fs.nr_open) defaults to this.
        const NR_OPEN: u64 = 1 << 20;
        let limit = getrlimit(Resource::Nofile);
        let before = limit.current;
        let Some(soft) = before else {
            return Some(OpenFiles { before, now: None });
        };
        let target = limit.maximum.unwrap_or(NR_OPEN);
        let now = if target > soft
            && setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(target),
                    maximum: limit.maximum,
                },
            )
            .is_ok()
        {
            target
        } else {
            soft
        };
        Some(OpenFiles {
            before,
            now: Some(now),
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Descriptors kept out of the connection cap: for stdio, the runtime's own, the listeners, the
/// log, key and keyring files, Redis and mail connections, 64; and per database connection 4
/// (an SQLite connection holds its database and write-ahead log files, a PostgreSQL one a
/// socket). Measured under a 32-connection write and read load on SQLite with
/// `database_max_connections` 8: 37 descriptors besides the clients' sockets, against the
/// 96 reserved.
pub fn reserve(database_max_connections: u32) -> u64 {
    64 + 4 * u64::from(database_max_connections)
}

/// The connection cap for an open-file limit: the limit less the reserve (never more than half
/// of it, so a low limit still admits some connections), at most [`CEILING`].
pub fn max_connections(open_files: Option<u64>, reserve: u64) -> u64 {
    match open_files {
        Some(limit) => limit
            .saturating_sub(reserve.min(limit / 2))
            .clamp(1, CEILING),
        None => CEILING,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_and_stays_within_bounds() {
        let reserve = reserve(8);
        assert_eq!(reserve, 96);
        assert_eq!(max_connections(Some(1024), reserve), 928);
        assert_eq!(
            max_connections(Some(150), reserve),
            75,
            "half of a low limit"
        );
        assert_eq!(max_connections(Some(1 << 20), reserve), CEILING);
        assert_eq!(max_connections(None, reserve), CEILING);
        assert_eq!(max_connections(Some(1), reserve), 1);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let hard = limit.maximum.unwrap_or(1 << 20);
        // Lowered first, as a service manager's default of 1,024 would be.
        let low = (hard / 2).max(64);
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(low),
                maximum: limit.maximum,
            },
        )
        .unwrap();
        let limits = raise_open_file_limit().unwrap();
        assert_eq!(limits.before, Some(low));
        assert_eq!(limits.now, Some(hard));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
    }
}
