//! How many connections may be open at once: in total, and from one client address. A
//! connection over either cap is refused at accept; the refusals are logged at warn, at most
//! once every few seconds, with the address truncated as the ledger stores it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ipnet::IpNet;
use rampart_audit::truncate_ip;
use tokio::time::Instant;

/// The per-address cap when none is configured, unless a quarter of the total is smaller.
pub const DEFAULT_PER_IP: u64 = 256;

/// The connection caps and the connections open now.
#[derive(Debug)]
pub struct Caps {
    total: u64,
    per_ip: u64,
    exempt: Vec<IpNet>,
    open: Mutex<Open>,
    shed_log: Every,
}

#[derive(Debug, Default)]
struct Open {
    total: u64,
    by_client: HashMap<IpAddr, u64>,
}

/// A connection's place under the caps, given back when it is dropped.
#[derive(Debug)]
pub struct Slot {
    caps: Arc<Caps>,
    client: Option<IpAddr>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Total,
    PerClient,
}

impl Over {
    fn as_str(self) -> &'static str {
        match self {
            Over::Total => "total",
            Over::PerClient => "per_ip",
        }
    }
}

/// The address a per-client cap counts: IPv4 (IPv4-mapped included) as is, IPv6 by its /64,
/// the block one subscriber is usually given, so one host cannot spread over its addresses.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Caps {
    /// Caps of `total` connections and `per_ip` from one client address (`per_ip` at most
    /// `total`); peers in `exempt` (trusted proxies, whose one address stands for many clients)
    /// count only towards the total.
    pub fn new(total: u64, per_ip: u64, exempt: Vec<IpNet>) -> Arc<Self> {
        let total = total.max(1);
        Arc::new(Self {
            total,
            per_ip: per_ip.clamp(1, total),
            exempt,
            open: Mutex::new(Open::default()),
            shed_log: Every::new(Duration::from_secs(5)),
        })
    }

    /// The cap on connections in total.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The cap on connections from one client address.
    pub fn per_ip(&self) -> u64 {
        self.per_ip
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        let ip = client_key_unmasked(ip);
        self.exempt.iter().any(|net| net.contains(&ip))
    }

    /// A slot for a connection from `peer`, or `None` (after logging, rate-limited) when a cap
    /// is reached.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let client = (!self.exempt(peer)).then(|| client_key(peer));
        let refused = {
            let mut open = self.lock();
            let from_client = client.map_or(0, |c| open.by_client.get(&c).copied().unwrap_or(0));
            if open.total >= self.total {
                Some((Over::Total, open.total))
            } else if client.is_some() && from_client >= self.per_ip {
                Some((Over::PerClient, open.total))
            } else {
                open.total += 1;
                if let Some(c) = client {
                    *open.by_client.entry(c).or_insert(0) += 1;
                }
                None
            }
        };
        match refused {
            None => Some(Slot {
                caps: self.clone(),
                client,
            }),
            Some((over, open)) => {
                if let Some(skipped) = self.shed_log.due() {
                    tracing::warn!(
                        client = %truncate_ip(peer),
                        cap = over.as_str(),
                        open,
                        max_connections = self.total,
                        max_connections_per_ip = self.per_ip,
                        also_shed_since_last_warning = skipped,
                        "connections shed: a new connection was over the connection cap and was closed unread"
                    );
                }
                None
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses compared as IPv4, as trusted-proxy networks are written.
fn client_key_unmasked(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(c) = self.client
            && let Some(n) = open.by_client.get_mut(&c)
        {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(&c);
            }
        }
    }
}

/// A rate limit for a log line: due at most once per period, counting the occasions skipped.
#[derive(Debug)]
pub struct Every {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    /// At most once per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(occasions skipped since the last one)` when this occasion should be logged.
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.period => {
                state.1 += 1;
                None
            }
            _ => {
                let skipped = state.1;
                *state = (Some(now), 0);
                Some(skipped)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_client_is_capped_and_the_total_too_and_slots_come_back() {
        let caps = Caps::new(5, 2, vec![]);
        let a1 = caps.admit(ip("192.0.2.1")).unwrap();
        let _a2 = caps.admit(ip("192.0.2.1")).unwrap();
        assert!(
            caps.admit(ip("192.0.2.1")).is_none(),
            "third from one address"
        );
        // Another address, even next door, is another client.
        let _b1 = caps.admit(ip("192.0.2.2")).unwrap();
        drop(a1);
        let _a3 = caps.admit(ip("192.0.2.1")).unwrap();
        let _b2 = caps.admit(ip("192.0.2.2")).unwrap();
        let _c1 = caps.admit(ip("198.51.100.7")).unwrap();
        assert_eq!(caps.open(), 5);
        assert!(caps.admit(ip("203.0.113.9")).is_none(), "over the total");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let caps = Caps::new(100, 2, vec![]);
        let _x = caps.admit(ip("2001:db8:1:2::1")).unwrap();
        let _y = caps.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(caps.admit(ip("2001:db8:1:2:abcd::1")).is_none());
        assert!(caps.admit(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _m = caps.admit(ip("::ffff:192.0.2.1")).unwrap();
        let _v = caps.admit(ip("192.0.2.1")).unwrap();
        assert!(
            caps.admit(ip("192.0.2.1")).is_none(),
            "mapped and plain are one"
        );
    }

    #[test]
    fn trusted_proxies_count_only_towards_the_total() {
        let caps = Caps::new(4, 1, vec!["10.0.0.0/8".parse().unwrap()]);
        let held: Vec<_> = (0..3)
            .map(|_| caps.admit(ip("10.1.2.3")).unwrap())
            .collect();
        let fourth = caps.admit(ip("::ffff:10.1.2.3"));
        assert!(
            fourth.is_some(),
            "over the per-address cap, but a trusted proxy"
        );
        assert!(
            caps.admit(ip("10.1.2.3")).is_none(),
            "the total still holds"
        );
        drop((held, fourth));
    }

    #[test]
    fn the_log_limit_counts_what_it_skips() {
        let every = Every::new(Duration::from_secs(3600));
        assert_eq!(every.due(), Some(0));
        assert_eq!(every.due(), None);
        assert_eq!(every.due(), None);
        let now_due = Every {
            period: Duration::ZERO,
            state: Mutex::new((Some(Instant::now()), 2)),
        };
        assert_eq!(now_due.due(), Some(2));
    }
}
