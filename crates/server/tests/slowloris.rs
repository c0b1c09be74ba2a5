//! Slow and greedy clients against the real binary, on loopback: idle connections, headers and
//! bodies trickled below the minimum are closed at the configured (here short) timeouts, while
//! a kept-alive connection outlives the header timeout and a fair client is served; one address
//! over its cap is refused while another address is still served; and under a low open-file
//! limit the server sheds connections instead of running out of descriptors.
//!
//! Every wait is on an observable event (the socket closes, a response arrives); the read
//! timeouts below are only a fail-safe against a hang.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::binary::{org_with_key, start, start_limited};
use serde_json::{Value, json};

/// Far beyond any deadline the tests configure: only a hang reaches it.
const FAIL_SAFE: Duration = Duration::from_secs(60);

/// A connection to `server` from the loopback address `from`.
fn connect_from(from: &str, server: &str) -> TcpStream {
    let server: SocketAddr = server.parse().unwrap();
    let local = SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&local.into()).unwrap();
    sock.connect(&server.into()).unwrap();
    TcpStream::from(sock)
}

/// Reads until the server closes the connection (end of stream or reset) and returns what came
/// first; panics if it stays open past the fail-safe.
fn until_closed(sock: &mut TcpStream) -> Vec<u8> {
    sock.set_read_timeout(Some(FAIL_SAFE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return got;
            }
            Err(e) => panic!("the server kept the connection open ({e})"),
        }
    }
}

/// Whether the server still holds the connection open: nothing to read, no end of stream.
fn is_open(sock: &TcpStream) -> bool {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let open = matches!((&*sock).read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock);
    sock.set_nonblocking(false).unwrap();
    open
}

/// Reads one response (headers, then a `Content-Length` body): its status and body. `None` if
/// the connection closed first.
fn read_response(sock: &mut TcpStream) -> Option<(u16, Value)> {
    sock.set_read_timeout(Some(FAIL_SAFE)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match sock.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => head.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return None;
            }
            Err(e) => panic!("no response ({e})"),
        }
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    sock.read_exact(&mut body).unwrap();
    Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

fn get(sock: &mut TcpStream, path: &str) {
    write!(sock, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
}

fn post_head(ws: &str, key: &str, length: usize) -> String {
    format!(
        "POST /v1/workspaces/{ws}/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Sends `prefix`, then one byte of `filler` every 50 ms, reading whatever the server answers,
/// until the server closes the connection; returns what it answered. Panics at the fail-safe.
fn trickle(mut sock: TcpStream, prefix: &[u8], filler: u8) -> Vec<u8> {
    sock.write_all(prefix).unwrap();
    sock.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(started.elapsed() < FAIL_SAFE, "a trickle was never cut off");
        match sock.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => return got,
        }
        match sock.write(&[filler]) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // Closed by the server; what it sent before is already read or lost with the reset.
            Err(_) => {
                sock.set_nonblocking(false).unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                while let Ok(n) = sock.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                return got;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The 408 a trickled or stalled body gets: status, envelope and why.
fn assert_request_timeout(answer: &[u8], why: &str) {
    let text = String::from_utf8_lossy(answer);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "REQUEST_TIMEOUT", "{text}");
    assert!(
        v["error"]["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_")),
        "{text}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(why), "{message}");
}

#[test]
fn idle_and_trickling_connections_are_closed_and_fair_clients_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let env = [
        ("RAMPART_HTTP__HEADER_READ_TIMEOUT_SECS", "1"),
        ("RAMPART_HTTP__KEEP_ALIVE_TIMEOUT_SECS", "8"),
        ("RAMPART_HTTP__BODY_IDLE_TIMEOUT_SECS", "2"),
        ("RAMPART_HTTP__BODY_MIN_RATE_BYTES_PER_SEC", "1024"),
        ("RAMPART_HTTP__BODY_MIN_RATE_GRACE_SECS", "3"),
        ("RAMPART_HTTP__MAX_CONNECTIONS_PER_IP", "1000"),
        ("RAMPART_RATE_LIMITS__API_PER_IP", "100000"),
        ("RAMPART_RATE_LIMITS__API_PER_KEY", "100000"),
    ];
    let (ws, key) = org_with_key(&data, &env, "enterprise");
    let server = start(&data, &env);
    let addr = server.addr.clone();

    // A kept-alive connection, idle from now on.
    let mut kept = connect_from("127.0.0.1", &addr);
    get(&mut kept, "/healthz");
    assert_eq!(read_response(&mut kept).unwrap().0, 200);

    // 200 connections that never send a byte.
    let mut idle: Vec<TcpStream> = (0..200).map(|_| connect_from("127.0.0.1", &addr)).collect();
    // Headers a byte at a time, never finished.
    let headers: Vec<_> = (0..20)
        .map(|_| {
            let sock = connect_from("127.0.0.1", &addr);
            std::thread::spawn(move || trickle(sock, b"GET /healthz HTTP/1.1\r\nX-Slow: ", b'a'))
        })
        .collect();
    // Bodies a byte every 50 ms (20 bytes a second, against a minimum of 1,024 after 3 s).
    let trickled: Vec<_> = (0..10)
        .map(|_| {
            let sock = connect_from("127.0.0.1", &addr);
            let head = post_head(&ws, &key, 100_000);
            std::thread::spawn(move || {
                trickle(sock, format!("{head}{{\"name\":\"").as_bytes(), b'a')
            })
        })
        .collect();
    // Bodies that start and then stop.
    let mut stalled: Vec<TcpStream> = (0..10)
        .map(|_| {
            let mut sock = connect_from("127.0.0.1", &addr);
            write!(sock, "{}{{\"name\"", post_head(&ws, &key, 1000)).unwrap();
            sock
        })
        .collect();
    // A fair client: its body in two parts, the pause shorter than the body idle timeout (2 s)
    // and the grace period (3 s).
    let mut fair = connect_from("127.0.0.1", &addr);
    let body = json!({"name": "Fair", "email": "fair@example.com"}).to_string();
    write!(fair, "{}{}", post_head(&ws, &key, body.len()), &body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    fair.write_all(&body.as_bytes()[10..]).unwrap();
    let (status, created) = read_response(&mut fair).unwrap();
    assert_eq!(status, 201, "{created}");

    for sock in &mut idle {
        assert!(until_closed(sock).is_empty(), "closed without an answer");
    }
    // The idle connections met the 1 s header deadline; the kept-alive one, idle for longer
    // than that already, waits up to 8 s and serves its next request.
    assert!(
        is_open(&kept),
        "a kept-alive connection outlives the header timeout"
    );
    get(&mut kept, "/healthz");
    assert_eq!(read_response(&mut kept).unwrap().0, 200);
    assert!(
        until_closed(&mut kept).is_empty(),
        "closed once idle too long"
    );

    for t in headers {
        let answer = t.join().unwrap();
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    for t in trickled {
        assert_request_timeout(&t.join().unwrap(), "slower than the minimum of 1024 bytes");
    }
    for sock in &mut stalled {
        assert_request_timeout(&until_closed(sock), "no byte of the request body");
    }

    // The refused bodies wrote nothing: the fair contact is the only one.
    let mut sock = connect_from("127.0.0.1", &addr);
    write!(
        sock,
        "GET /v1/workspaces/{ws}/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .unwrap();
    let (status, list) = read_response(&mut sock).unwrap();
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    // And the ledger says what the clients were told: a 408 for each cut-off body.
    let mut sock = connect_from("127.0.0.1", &addr);
    write!(
        sock,
        "GET /v1/workspaces/{ws}/audit-events?action=contact.create&limit=200 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .unwrap();
    let (status, events) = read_response(&mut sock).unwrap();
    assert_eq!(status, 200, "{events}");
    let statuses: Vec<u64> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 408).count(),
        20,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
}

/// Sends `GET /healthz` on a new connection from `from`: `Some(status)`, or `None` when the
/// server closed the connection instead of answering.
fn health_from(from: &str, server: &str) -> Option<u16> {
    let mut sock = connect_from(from, server);
    write!(
        sock,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    read_response(&mut sock).map(|(status, _)| status)
}

#[test]
fn greedy_addresses_are_shed_before_descriptors_run_out_and_others_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Idle connections stay open for the whole test unless refused.
    let env = [
        ("RAMPART_HTTP__HEADER_READ_TIMEOUT_SECS", "600"),
        ("RAMPART_HTTP__KEEP_ALIVE_TIMEOUT_SECS", "600"),
    ];
    // A soft limit of 128 that the server raises to the hard limit, 256, at start.
    let server = start_limited(&data, &env, Some((128, 256)));
    let addr = server.addr.clone();
    let limits = server.log_lines("connection limits");
    let fields = &limits[0]["fields"];
    assert_eq!(fields["open_file_limit_at_start"], 128, "{fields}");
    assert_eq!(fields["open_file_limit"], 256, "{fields}");
    // 256 less the reserve for the database and the rest (96 at 8 database connections).
    assert_eq!(fields["max_connections"], 160, "{fields}");
    // A quarter of the total, the default 256 being more.
    assert_eq!(fields["max_connections_per_ip"], 40, "{fields}");
    let (total, per_ip) = (160, 40);

    // One address takes its 40 and then asks for 300 more: far past the 256 descriptors the
    // process may open, had they been accepted.
    // Each is answered once, so the server has accepted all 40 before the next connection is
    // made (a connect completes in the kernel's backlog, before the server accepts it: without
    // this, the 41st could be accepted ahead of one of them), and then kept alive.
    let held: Vec<TcpStream> = (0..per_ip)
        .map(|_| {
            let mut sock = connect_from("127.0.0.1", &addr);
            write!(sock, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            assert_eq!(read_response(&mut sock).map(|(s, _)| s), Some(200));
            sock
        })
        .collect();
    for _ in 0..300 {
        assert_eq!(health_from("127.0.0.1", &addr), None, "over its cap");
    }
    // Another address is served meanwhile, and the held connections are still open.
    assert_eq!(health_from("127.0.0.2", &addr), Some(200));
    assert!(held.iter().all(is_open), "the first 40 are kept");

    // Many addresses together reach the total cap: past it, everyone is shed.
    let mut fill = Vec::new();
    let mut refused = 0;
    for i in 3..=6 {
        let from = format!("127.0.0.{i}");
        for _ in 0..per_ip {
            let mut sock = connect_from(&from, &addr);
            // A refused connection may be closed before the request is even written.
            let sent = write!(sock, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").is_ok();
            match read_response(&mut sock).filter(|_| sent) {
                Some((status, _)) => {
                    assert_eq!(status, 200);
                    fill.push(sock);
                }
                None => refused += 1,
            }
        }
    }
    assert!(
        refused >= 1,
        "4 × 40 more than the total of {total} leaves some out"
    );
    assert!(
        held.len() + fill.len() <= total,
        "{} held",
        held.len() + fill.len()
    );
    let shed = server.log_lines("connections shed");
    let caps: Vec<&str> = shed
        .iter()
        .filter_map(|l| l["fields"]["cap"].as_str())
        .collect();
    assert!(caps.contains(&"per_ip"), "{caps:?}");
    assert!(
        shed.iter().all(|l| l["level"] == "WARN"
            && l["fields"]["client"]
                .as_str()
                .is_some_and(|c| c.ends_with(".0"))),
        "{shed:?}"
    );
    // Over 300 refusals, a few warnings (one per 5 s at most).
    assert!(shed.len() < 20, "{} warnings", shed.len());
    assert!(
        server.log_lines("accepting a connection failed").is_empty(),
        "the process ran out of descriptors: {}",
        server.log_text()
    );

    // The greedy clients leave; the server answers everyone again.
    drop((held, fill));
    let deadline = Instant::now() + FAIL_SAFE;
    while health_from("127.0.0.1", &addr) != Some(200) {
        assert!(Instant::now() < deadline, "not answering after the flood");
        std::thread::sleep(Duration::from_millis(50));
    }
}
