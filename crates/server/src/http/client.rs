//! Who is on the other end: the peer address, or, when the peer is a configured trusted proxy,
//! the client it names in `X-Forwarded-For` (the right-most address that is not itself a
//! trusted proxy) and the scheme it names in `X-Forwarded-Proto`. From anyone else those
//! headers are ignored, so a client cannot pick the address it is rate-limited and audited as.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::state::AppState;

/// The client as the server believes it to be.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// Whether the client reached us over https (directly or through a trusted proxy).
    pub https: bool,
}

fn trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// Works out the [`ClientInfo`] of a request.
pub fn resolve(
    proxies: &[IpNet],
    peer: Option<IpAddr>,
    tls: bool,
    forwarded_for: Option<&str>,
    forwarded_proto: Option<&str>,
) -> ClientInfo {
    let Some(peer) = peer else {
        return ClientInfo {
            ip: None,
            https: tls,
        };
    };
    if !trusted(proxies, peer) {
        return ClientInfo {
            ip: Some(peer),
            https: tls,
        };
    }
    let mut ip = peer;
    if let Some(chain) = forwarded_for {
        for hop in chain.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(addr) if trusted(proxies, addr) => ip = addr,
                Ok(addr) => {
                    ip = addr;
                    break;
                }
                // A hop we cannot read ends what we can believe.
                Err(_) => break,
            }
        }
    }
    let https = forwarded_proto.map_or(tls, |p| p.trim().eq_ignore_ascii_case("https"));
    ClientInfo {
        ip: Some(ip),
        https,
    }
}

/// Every line of header `name`, joined with commas (RFC 9110, section 5.3: a list header may
/// come as several lines, which mean the same as one). A proxy that appends a line of its own
/// (HAProxy's `option forwardfor`) puts the hop it saw last; reading only the first line would
/// believe the client's forged one instead. A line that is not text ends what can be read.
fn joined(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for value in headers.get_all(name) {
        let Ok(text) = value.to_str() else {
            // Unreadable: nothing from here on can be believed; keep what came before, plus a
            // hop that cannot parse, which ends the walk from the right at this point.
            out = Some(out.map_or_else(|| "unreadable".to_owned(), |o| o + ", unreadable"));
            continue;
        };
        out = Some(match out {
            None => text.to_owned(),
            Some(o) => format!("{o}, {text}"),
        });
    }
    out
}

/// Marks a connection accepted over TLS.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// The layer that attaches [`ClientInfo`] to every request.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let info = {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let tls = req.extensions().get::<OverTls>().is_some();
        let forwarded_for = joined(req.headers(), "x-forwarded-for");
        let proto = joined(req.headers(), "x-forwarded-proto");
        // The proto a proxy appends is the last one, as for the address.
        let proto = proto.as_deref().and_then(|p| p.rsplit(',').next());
        resolve(
            state.trusted_proxies(),
            peer,
            tls,
            forwarded_for.as_deref(),
            proto,
        )
    };
    req.extensions_mut().insert(info);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies = nets(&["10.0.0.0/8"]);
        let spoof = resolve(
            &proxies,
            Some("203.0.113.9".parse().unwrap()),
            false,
            Some("1.2.3.4"),
            Some("https"),
        );
        assert_eq!(spoof.ip, Some("203.0.113.9".parse().unwrap()));
        assert!(!spoof.https);
        let via = resolve(
            &proxies,
            Some("10.0.0.2".parse().unwrap()),
            false,
            Some("198.51.100.7, 10.0.0.5"),
            Some("https"),
        );
        assert_eq!(
            via.ip,
            Some("198.51.100.7".parse().unwrap()),
            "right-most untrusted hop"
        );
        assert!(via.https);
        // A client-supplied left part cannot override the hop the proxy saw.
        let prepended = resolve(
            &proxies,
            Some("10.0.0.2".parse().unwrap()),
            false,
            Some("6.6.6.6, 198.51.100.7"),
            None,
        );
        assert_eq!(prepended.ip, Some("198.51.100.7".parse().unwrap()));
        let junk = resolve(
            &proxies,
            Some("10.0.0.2".parse().unwrap()),
            false,
            Some("not-an-ip"),
            None,
        );
        assert_eq!(junk.ip, Some("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn every_forwarded_for_line_counts_and_the_proxys_own_line_wins() {
        let proxies = nets(&["10.0.0.0/8"]);
        let mut headers = axum::http::HeaderMap::new();
        // The client forges a first line; the trusted proxy appends the address it saw.
        headers.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        headers.append("x-forwarded-for", "198.51.100.7".parse().unwrap());
        let chain = joined(&headers, "x-forwarded-for");
        assert_eq!(chain.as_deref(), Some("6.6.6.6, 198.51.100.7"));
        let via = resolve(
            &proxies,
            Some("10.0.0.2".parse().unwrap()),
            false,
            chain.as_deref(),
            None,
        );
        assert_eq!(via.ip, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(
            joined(&axum::http::HeaderMap::new(), "x-forwarded-for"),
            None
        );
    }
}
